#include "package/credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "json/json.h"

extern char **environ;

namespace mp::package {
namespace {

const char *const kHubKeys[] = {"https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"};

bool is_hub(const std::string &r) {
    return r == "docker.io" || r == "index.docker.io" || r == "registry-1.docker.io";
}

// "https://host:port/v1/" -> "host:port"
std::string key_host(std::string k) {
    for (const char *scheme : {"https://", "http://"})
        if (k.rfind(scheme, 0) == 0) k = k.substr(std::strlen(scheme));
    auto slash = k.find('/');
    if (slash != std::string::npos) k = k.substr(0, slash);
    return k;
}

std::string docker_config_path() {
    if (const char *d = std::getenv("DOCKER_CONFIG"); d && *d) return std::string(d) + "/config.json";
    if (const char *h = std::getenv("HOME"); h && *h) return std::string(h) + "/.docker/config.json";
    return "";
}

bool matches(const std::string &key, const std::string &registry) {
    if (key_host(key) == registry) return true;
    if (is_hub(registry))
        for (const char *k : kHubKeys)
            if (key == k || key_host(key) == key_host(k)) return true;
    return false;
}

// The server name a credential helper is asked about: docker passes the
// auths key, i.e. "https://index.docker.io/v1/" for Hub, else the host.
std::string helper_server(const std::string &registry) {
    return is_hub(registry) ? std::string(kHubKeys[0]) : registry;
}

}  // namespace

std::string base64_encode(const std::string &in, bool url_safe) {
    const char *alpha = url_safe ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                                 : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    while (i + 2 < in.size()) {
        uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += alpha[(v >> 18) & 63];
        out += alpha[(v >> 12) & 63];
        out += alpha[(v >> 6) & 63];
        out += alpha[v & 63];
        i += 3;
    }
    size_t rest = in.size() - i;
    if (rest) {
        uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (rest == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += alpha[(v >> 18) & 63];
        out += alpha[(v >> 12) & 63];
        out += rest == 2 ? alpha[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string base64_decode(const std::string &in) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char ch : in) {
        int v;
        if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
        else if (ch == '+' || ch == '-') v = 62;
        else if (ch == '/' || ch == '_') v = 63;
        else if (ch == '=' || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
        else throw Error(MP_EINVAL, "invalid base64 character");
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return out;
}

std::string credential_sources_hint() {
    std::string cfg = docker_config_path();
    return "METAPARTICLE_REGISTRY_USERNAME/METAPARTICLE_REGISTRY_PASSWORD, and " +
           (cfg.empty() ? std::string("the docker config (no $HOME or $DOCKER_CONFIG)") : cfg) +
           " (auths, credHelpers, credsStore, as written by `docker login`)";
}

Credentials run_credential_helper(const std::string &helper, const std::string &server) {
    std::string prog = "docker-credential-" + helper;
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) throw Error(MP_ERROR, std::string("pipe: ") + std::strerror(errno));
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        throw Error(MP_ERROR, std::string("pipe: ") + std::strerror(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    char *argv[] = {const_cast<char *>(prog.c_str()), const_cast<char *>("get"), nullptr};
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, prog.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        throw Error(MP_EREGISTRY, "the docker config names the credential helper \"" + helper + "\", but " + prog +
                                      " cannot be run (" + std::strerror(rc) + "); install it or fix the docker config");
    }
    // The helper reads one line: the server URL. A closed pipe on its side
    // must not kill us.
    std::string line = server + "\n";
    // SIGPIPE is blocked for this thread only (a process-wide SIG_IGN would
    // race with other threads) and a pending one is consumed afterwards.
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    ssize_t w = write(in[1], line.data(), line.size());
    if (w < 0 && errno == EPIPE) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
    close(in[1]);

    std::string output;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    bool timed_out = false;
    char buf[4096];
    while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {out[0], POLLIN, 0};
        int pr = poll(&p, 1, static_cast<int>(left));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (output.size() < (1 << 20)) output.append(buf, static_cast<size_t>(n));
    }
    close(out[0]);
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) throw Error(MP_EREGISTRY, prog + " get did not answer within 30 s (is it waiting for a keyring unlock?)");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        // docker's helpers print "credentials not found in native keychain".
        if (output.find("not found") != std::string::npos) return {};
        while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
        throw Error(MP_EREGISTRY, prog + " get failed for " + server + ": " + output);
    }
    auto j = json::parse(output);
    if (!j) throw Error(MP_EREGISTRY, prog + " get printed something that is not JSON");
    Credentials c;
    std::string user = json::get_string(j.get(), "Username").value_or("");
    std::string secret = json::get_string(j.get(), "Secret").value_or("");
    if (user == "<token>") c.identity_token = secret;  // docker's marker for an identity token
    else {
        c.username = user;
        c.password = secret;
    }
    c.source = "the credential helper " + prog;
    return c;
}

Credentials lookup_credentials(const std::string &registry) {
    const char *u = std::getenv("METAPARTICLE_REGISTRY_USERNAME");
    const char *p = std::getenv("METAPARTICLE_REGISTRY_PASSWORD");
    if (u && *u) {
        Credentials c;
        c.username = u;
        c.password = p ? p : "";
        c.source = "the environment variables METAPARTICLE_REGISTRY_USERNAME/METAPARTICLE_REGISTRY_PASSWORD";
        return c;
    }
    std::string path = docker_config_path();
    if (path.empty()) return {};
    std::ifstream f(path);
    if (!f) return {};
    std::stringstream ss;
    ss << f.rdbuf();
    auto cfg = json::parse(ss.str());
    if (!cfg) throw Error(MP_EREGISTRY, path + " is not valid JSON; fix or remove it (it holds docker's registry credentials)");

    if (const cJSON *helpers = json::get_object(cfg.get(), "credHelpers")) {
        for (const cJSON *h = helpers->child; h; h = h->next) {
            if (h->string && cJSON_IsString(h) && matches(h->string, registry)) {
                Credentials c = run_credential_helper(h->valuestring, helper_server(registry));
                if (!c.empty()) return c;
            }
        }
    }
    if (const cJSON *auths = json::get_object(cfg.get(), "auths")) {
        for (const cJSON *a = auths->child; a; a = a->next) {
            if (!a->string || !cJSON_IsObject(a) || !matches(a->string, registry)) continue;
            Credentials c;
            if (auto auth = json::get_string(a, "auth"); auth && !auth->empty()) {
                std::string decoded;
                try {
                    decoded = base64_decode(*auth);
                } catch (const Error &) {
                    throw Error(MP_EREGISTRY, path + ": auths[\"" + std::string(a->string) +
                                                  "\"].auth is not base64; run `docker login` again");
                }
                auto colon = decoded.find(':');
                if (colon == std::string::npos)
                    throw Error(MP_EREGISTRY, path + ": auths[\"" + std::string(a->string) +
                                                  "\"].auth is not \"user:password\"; run `docker login` again");
                c.username = decoded.substr(0, colon);
                c.password = decoded.substr(colon + 1);
            } else {
                c.username = json::get_string(a, "username").value_or("");
                c.password = json::get_string(a, "password").value_or("");
            }
            c.identity_token = json::get_string(a, "identitytoken").value_or("");
            if (!c.empty()) {
                c.source = path + " (auths[\"" + std::string(a->string) + "\"])";
                return c;
            }
        }
    }
    if (auto store = json::get_string(cfg.get(), "credsStore"); store && !store->empty()) {
        Credentials c = run_credential_helper(*store, helper_server(registry));
        if (!c.empty()) return c;
    }
    return {};
}

}  // namespace mp::package
