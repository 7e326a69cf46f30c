#include "package/docker_runner.h"

#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "common/error.h"
#include "package/credentials.h"
#include "package/digest.h"
#include "package/docker_engine.h"
#include "package/registry.h"
#include "package/render.h"

namespace mp::package {
namespace {

std::mutex g_out_mu;  // one line at a time on the terminal

// How long `docker stop` waits for a replica to exit after SIGTERM before it
// is killed. Short: these are development runs, and the program's PID 1
// without a SIGTERM handler would otherwise always cost the full wait.
constexpr int kStopGraceSeconds = 5;

// Cuts a replica's output into lines and prints each with its prefix.
class LinePrinter {
public:
    LinePrinter(std::string prefix) : prefix_(std::move(prefix)) {}
    void feed(int stream, const char *d, size_t n) {
        std::string &buf = stream == 2 ? err_ : out_;
        buf.append(d, n);
        size_t start = 0, nl;
        while ((nl = buf.find('\n', start)) != std::string::npos) {
            emit(stream, buf.substr(start, nl - start));
            start = nl + 1;
        }
        buf.erase(0, start);
        // A program that never ends its line must not grow us forever.
        if (buf.size() > 64 * 1024) {
            emit(stream, buf);
            buf.clear();
        }
    }
    void flush() {
        if (!out_.empty()) emit(1, out_);
        if (!err_.empty()) emit(2, err_);
        out_.clear();
        err_.clear();
    }

private:
    void emit(int stream, std::string line) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        std::lock_guard<std::mutex> lk(g_out_mu);
        FILE *f = stream == 2 ? stderr : stdout;
        std::fprintf(f, "%s%s\n", prefix_.c_str(), line.c_str());
        std::fflush(f);
    }
    std::string prefix_, out_, err_;
};

struct Replica {
    std::string name, id;
    std::thread follower;
    std::atomic<bool> done{false};
    std::string error;
};

std::string registry_auth_header(const std::string &reference) {
    ImageRef ref = parse_image_ref(reference);
    Credentials c = lookup_credentials(ref.registry);
    if (c.empty()) return "";
    auto j = json::object();
    if (!c.identity_token.empty()) {
        json::set_string(j.get(), "identitytoken", c.identity_token);
    } else {
        json::set_string(j.get(), "username", c.username);
        json::set_string(j.get(), "password", c.password);
    }
    json::set_string(j.get(), "serveraddress", ref.registry);
    return base64_encode(json::print(j.get()), true);
}

}  // namespace

void docker_preflight() { Engine(Engine::default_host()).ping(); }

int run_docker(const Options &o, const Image &image, const std::function<void(const std::string &)> &log,
               const std::atomic<bool> &interrupted) {
    auto say = [&](const std::string &m) {
        if (log) log(m);
    };
    const std::string host = Engine::default_host();
    Engine engine(host);
    engine.ping();

    std::string image_id;
    if (o.publish) {
        say("pulling " + image.reference + " through the container engine at " + host);
        engine.pull(image.reference, registry_auth_header(image.reference), parse_image_ref(image.reference).plain_http);
        image_id = engine.image_id(image.reference);
    } else {
        say("loading " + image.reference + " into the container engine at " + host);
        engine.load(docker_archive(image));
        // Engines name a loaded short reference differently (Docker:
        // docker.io/library/x, Podman: localhost/x): ask by reference, then by
        // the config digest, which is the image ID for both.
        image_id = engine.image_id(image.reference);
        if (image_id.empty()) image_id = engine.image_id(image.config.digest);
    }
    if (image_id.empty()) image_id = engine.image_id(digest_hex(image.config.digest));
    if (image_id.empty())
        throw Error(MP_EENGINE, "the container engine at " + host + " accepted " + image.reference +
                                    " but does not list it afterwards");

    // Leftovers of an earlier run (interrupted without cleanup, keepRunning).
    for (const auto &c : engine.list_containers(std::string(kLabelName) + "=" + o.name)) {
        std::string id = json::get_string(c.get(), "Id").value_or("");
        if (id.empty()) continue;
        say("removing container " + id.substr(0, 12) + " left by an earlier run");
        engine.remove_container(id);
    }
    const int n = o.instance_count();
    for (int i = 0; i < n; ++i) {
        std::string name = replica_name(o, i);
        if (auto existing = engine.inspect_container(name)) {
            const cJSON *labels = json::path(existing.get(), {"Config", "Labels"});
            if (json::get_string(labels, kLabelName).value_or("") != o.name)
                throw Error(MP_EENGINE, "a container named " + name +
                                            " exists and was not started by containerize; remove it, or set \"name\"");
            engine.remove_container(name);
        }
    }

    std::vector<std::unique_ptr<Replica>> replicas;
    std::atomic<bool> stop_following{false};
    // Teardown: stop the replicas first while their logs are still followed
    // (so their last words are printed), then end the log streams, then
    // remove. Stops run in parallel: each may wait out the grace period.
    auto parallel = [&](const std::function<void(Engine &, Replica &)> &fn, const char *verb) {
        std::vector<std::thread> workers;
        for (auto &r : replicas) {
            if (r->id.empty()) continue;
            Replica *rp = r.get();
            workers.emplace_back([&host, rp, &fn, verb] {
                try {
                    Engine e(host);
                    fn(e, *rp);
                } catch (const std::exception &ex) {
                    std::lock_guard<std::mutex> lk(g_out_mu);
                    std::fprintf(stderr, "containerize: could not %s %s: %s\n", verb, rp->name.c_str(), ex.what());
                }
            });
        }
        for (auto &t : workers) t.join();
    };
    auto cleanup = [&](bool remove) {
        if (remove) parallel([](Engine &e, Replica &r) { e.stop_container(r.id, kStopGraceSeconds); }, "stop");
        // The streams end by themselves once the containers have stopped;
        // give them a moment to deliver the last lines, then cut them.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(remove ? 3 : 0);
        while (std::chrono::steady_clock::now() < deadline) {
            bool all = true;
            for (auto &r : replicas) all = all && (!r->follower.joinable() || r->done.load());
            if (all) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        stop_following = true;
        for (auto &r : replicas)
            if (r->follower.joinable()) r->follower.join();
        if (remove) parallel([](Engine &e, Replica &r) { e.remove_container(r.id); }, "remove");
    };

    try {
        for (int i = 0; i < n; ++i) {
            auto r = std::make_unique<Replica>();
            r->name = replica_name(o, i);
            auto body = docker_create_body(o, i, image_id);
            r->id = engine.create_container(r->name, body.get());
            replicas.push_back(std::move(r));
            engine.start_container(replicas.back()->id);
            std::string ports;
            for (int p : o.ports) ports += (ports.empty() ? " (port " : ", ") + std::to_string(p + i) + "->" + std::to_string(p);
            if (!ports.empty()) ports += ")";
            say("started " + replicas.back()->name + " " + replicas.back()->id.substr(0, 12) + ports);
        }
        for (auto &rp : replicas) {
            Replica *r = rp.get();
            r->follower = std::thread([&host, r, &stop_following] {
                LinePrinter printer("[" + r->name + "] ");
                try {
                    Engine e(host);
                    e.follow_logs(
                        r->id, [&](int stream, const char *d, size_t len) {
                            printer.feed(stream, d, len);
                            return true;
                        },
                        &stop_following);
                } catch (const std::exception &ex) {
                    r->error = ex.what();
                }
                printer.flush();
                r->done = true;
            });
        }
    } catch (...) {
        cleanup(true);
        throw;
    }

    // Wait for Ctrl-C / SIGTERM or for every replica to finish. The signal
    // handler can only set a flag, so poll it.
    bool all_done = false;
    while (!interrupted.load() && !all_done) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        all_done = true;
        for (auto &r : replicas) all_done = all_done && r->done.load();
    }

    int exit_code = 0;
    if (interrupted.load()) {
        say(o.keep_running ? "interrupted: leaving the containers running" : "interrupted: stopping and removing the containers");
    } else {
        for (auto &r : replicas) {
            if (!r->error.empty()) say(r->name + ": " + r->error);
            auto info = engine.inspect_container(r->id);
            int code = info ? static_cast<int>(json::get_int(json::get_object(info.get(), "State"), "ExitCode").value_or(0)) : 0;
            if (code != 0 && exit_code == 0) exit_code = code;
            say(r->name + " exited with code " + std::to_string(code));
        }
    }
    cleanup(!o.keep_running);
    if (!o.keep_running) say("removed " + std::to_string(replicas.size()) + " container(s)");
    return exit_code;
}

}  // namespace mp::package
