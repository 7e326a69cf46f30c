// Sync benchmark: prints figures, asserts nothing.
//
//   sync_bench --sidecar-bin build/sidecar/mp-sidecar [--rounds N] [-- extra mp-sidecar flags]
//
// Starts its own mp-sidecar on 127.0.0.1 (random port) with the extra flags
// (e.g. `-- --backend=lease --kubeconfig=/tmp/kubeconfig`), then measures:
//  1. uncontended acquire + release round trip, p50/p99
//  2. handover: release -> the waiter's on_acquired callback, p50/p99
//  3. failover after the holder is SIGKILLed, compared with the TTL
//  4. sidecar resident memory idle and with 10,000 locks held
#include <metaparticle.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"

extern char **environ;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Proc {
    pid_t pid = 0;
    FILE *out = nullptr;
};

Proc spawn(std::vector<std::string> args) {
    int fds[2];
    if (pipe(fds) != 0) std::exit(1);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<char *> argv;
    for (auto &a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    Proc p;
    if (posix_spawn(&p.pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
        std::fprintf(stderr, "cannot start %s\n", argv[0]);
        std::exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    p.out = fdopen(fds[0], "r");
    return p;
}

std::string read_line(Proc &p) {
    char buf[1024];
    if (!std::fgets(buf, sizeof buf, p.out)) return "";
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

long rss_kib(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

void check(int rc, const char *what) {
    if (rc != MP_OK) {
        std::fprintf(stderr, "%s: %s: %s\n", what, mp_error_name(rc), mp_error_last());
        std::exit(1);
    }
}

mp_lock *make_lock(const std::string &url, const char *name, const char *owner, unsigned ttl) {
    mp_lock_options o = MP_LOCK_OPTIONS_INIT;
    o.sidecar_url = url.c_str();
    o.owner = owner;
    o.ttl_seconds = ttl;
    o.on_lost = [](mp_lock *, void *) {};
    mp_lock *l = nullptr;
    check(mp_lock_create(&l, name, &o), "mp_lock_create");
    return l;
}

struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool fired = false;
    Clock::time_point at;
};

int hold_mode(const char *url, const char *name, unsigned ttl) {
    mp_lock *l = make_lock(url, name, "bench-holder", ttl);
    check(mp_lock_acquire(l, 30000), "holder acquire");
    std::printf("HELD\n");
    std::fflush(stdout);
    for (;;) pause();
}

}  // namespace

int main(int argc, char **argv) {
    if (argc >= 5 && std::strcmp(argv[1], "--hold") == 0) return hold_mode(argv[2], argv[3], std::atoi(argv[4]));

    std::string sidecar_bin;
    int rounds = 1000;
    std::vector<std::string> extra;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--sidecar-bin" && i + 1 < argc) {
            sidecar_bin = argv[++i];
        } else if (a == "--rounds" && i + 1 < argc) {
            rounds = std::atoi(argv[++i]);
        } else if (a == "--") {
            for (++i; i < argc; i++) extra.push_back(argv[i]);
        } else {
            std::fprintf(stderr, "usage: %s --sidecar-bin PATH [--rounds N] [-- mp-sidecar flags]\n", argv[0]);
            return 2;
        }
    }
    if (sidecar_bin.empty()) {
        std::fprintf(stderr, "--sidecar-bin is required\n");
        return 2;
    }

    std::vector<std::string> sargs = {sidecar_bin, "--listen", "127.0.0.1:0"};
    sargs.insert(sargs.end(), extra.begin(), extra.end());
    Proc sidecar = spawn(sargs);
    std::string first = read_line(sidecar);
    auto at = first.find("http://127.0.0.1:");
    if (at == std::string::npos) {
        std::fprintf(stderr, "mp-sidecar did not start: %s\n", first.c_str());
        return 1;
    }
    std::string url = first.substr(at, first.find_first_of(" )", at) - at);
    std::printf("sidecar: %s\n", first.c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    long idle_rss = rss_kib(sidecar.pid);

    // 1. Uncontended acquire + release.
    {
        mp_lock *l = make_lock(url, "bench-rtt", "bench-a", 15);
        std::vector<double> v;
        for (int i = 0; i < rounds; i++) {
            auto t = Clock::now();
            check(mp_lock_acquire(l, 5000), "acquire");
            check(mp_lock_release(l), "release");
            v.push_back(ms_since(t));
        }
        std::printf("acquire+release round trip (%d rounds): p50 %.3f ms  p99 %.3f ms\n", rounds, pct(v, 50),
                    pct(v, 99));
        mp_lock_free(l);
    }

    // 2. Handover: A releases, B (waiting through lock_async) gets on_acquired.
    {
        int n = std::max(20, rounds / 5);
        mp_lock *locks[2] = {make_lock(url, "bench-handover", "bench-a", 15),
                             make_lock(url, "bench-handover", "bench-b", 15)};
        Signal sig;
        auto on_acquired = [](mp_lock *, void *ud) {
            auto *s = static_cast<Signal *>(ud);
            std::lock_guard<std::mutex> g(s->mu);
            s->at = Clock::now();
            s->fired = true;
            s->cv.notify_all();
        };
        check(mp_lock_acquire(locks[0], 5000), "acquire");
        std::vector<double> v;
        for (int i = 0; i < n; i++) {
            mp_lock *holder = locks[i % 2], *waiter = locks[(i + 1) % 2];
            {
                std::lock_guard<std::mutex> g(sig.mu);
                sig.fired = false;
            }
            check(mp_lock_lock_async(waiter, on_acquired, &sig), "lock_async");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the waiter's long-poll arrive
            auto t = Clock::now();
            check(mp_lock_release(holder), "release");
            std::unique_lock<std::mutex> lk(sig.mu);
            if (!sig.cv.wait_for(lk, std::chrono::seconds(20), [&] { return sig.fired; })) {
                std::fprintf(stderr, "handover did not happen\n");
                return 1;
            }
            v.push_back(std::chrono::duration<double, std::milli>(sig.at - t).count());
        }
        std::printf("handover release -> on_acquired (%d rounds): p50 %.3f ms  p99 %.3f ms\n", n, pct(v, 50),
                    pct(v, 99));
        mp_lock_release(locks[n % 2]);
        mp_lock_free(locks[0]);
        mp_lock_free(locks[1]);
    }

    // 2b. Cancel: a blocking acquire waiting on a held lock, canceled from
    // another thread at a random moment; time until the acquire returns.
    {
        const int n = 20;
        mp_lock *holder = make_lock(url, "bench-cancel", "bench-holder", 15);
        mp_lock *waiter = make_lock(url, "bench-cancel", "bench-waiter", 15);
        check(mp_lock_acquire(holder, 5000), "acquire");
        std::vector<double> v;
        std::srand(static_cast<unsigned>(getpid()));
        for (int i = 0; i < n; i++) {
            std::atomic<int> rc{1};
            Clock::time_point returned;
            std::thread t([&] {
                rc = mp_lock_acquire(waiter, -1);
                returned = Clock::now();
            });
            std::this_thread::sleep_for(std::chrono::milliseconds(100 + std::rand() % 200));
            auto start = Clock::now();
            mp_lock_cancel(waiter);
            t.join();
            if (rc != MP_ECANCELED) {
                std::fprintf(stderr, "canceled acquire returned %d\n", rc.load());
                return 1;
            }
            v.push_back(std::chrono::duration<double, std::milli>(returned - start).count());
        }
        std::printf("cancel of a waiting acquire -> return (%d rounds): p50 %.1f ms  max %.1f ms\n", n, pct(v, 50),
                    *std::max_element(v.begin(), v.end()));
        mp_lock_release(holder);
        mp_lock_free(waiter);
        mp_lock_free(holder);
    }

    // 3. Failover after SIGKILL of the holder process.
    {
        const unsigned ttl = 3;
        std::vector<double> v;
        for (int i = 0; i < 3; i++) {
            Proc holder = spawn({"/proc/self/exe", "--hold", url, "bench-failover", std::to_string(ttl)});
            if (read_line(holder) != "HELD") {
                std::fprintf(stderr, "holder did not acquire\n");
                return 1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // at least one renewal
            mp_lock *l = make_lock(url, "bench-failover", "bench-waiter", ttl);
            kill(holder.pid, SIGKILL);
            auto t = Clock::now();
            waitpid(holder.pid, nullptr, 0);
            fclose(holder.out);
            check(mp_lock_acquire(l, 30000), "failover acquire");
            v.push_back(ms_since(t));
            mp_lock_free(l);
        }
        std::printf("failover after SIGKILL (TTL %u s, 3 runs): min %.0f ms  max %.0f ms  (TTL + %.0f ms worst)\n",
                    ttl, *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()),
                    *std::max_element(v.begin(), v.end()) - ttl * 1000.0);
    }

    // 4. Memory: idle, and with 10,000 locks held (raw protocol, TTL 1 h).
    {
        const int kLocks = 10000;
        auto t = Clock::now();
        std::atomic<int> failures{0};
        std::vector<std::thread> workers;
        for (int w = 0; w < 4; w++) {
            workers.emplace_back([&, w] {
                mp::http::Client c;
                for (int i = w; i < kLocks; i += 4) {
                    mp::http::Request req;
                    req.method = "PUT";
                    req.url = url + "/locks/mem-" + std::to_string(i);
                    req.body = "{\"owner\":\"bench\",\"ttlSeconds\":3600}";
                    req.headers = {"Content-Type: application/json"};
                    try {
                        if (c.request(req).status != 200) failures++;
                    } catch (...) {
                        failures++;
                    }
                }
            });
        }
        for (auto &th : workers) th.join();
        double took = ms_since(t);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::printf("sidecar RSS: idle %.1f MB; with %d locks held %.1f MB (%d failed; took %.0f ms to take them)\n",
                    idle_rss / 1024.0, kLocks, rss_kib(sidecar.pid) / 1024.0, failures.load(), took);
    }

    kill(sidecar.pid, SIGTERM);
    waitpid(sidecar.pid, nullptr, 0);
    return 0;
}
