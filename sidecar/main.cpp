// mp-sidecar: the Metaparticle lock service. One small process per pod (or per
// machine) that answers the HTTP lock protocol (README "Protocol (v1)") and stores lock
// records in a backend: memory (default), Kubernetes custom resources, or
// Kubernetes Leases.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "backends/backend.h"
#include "http_server.h"
#include "lock_service.h"
#include "log.h"
#include "metaparticle.h"
#include "run_state.h"

namespace sc = mp::sidecar;

namespace {

std::string host_name() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) return "localhost";
    return host;
}

// The run marker's name for a fixed listen address; "" for port 0.
std::string marker_name(const sc::ListenAddress &la) {
    char host[64] = {0};
    unsigned port;
    if (la.addr.ss_family == AF_INET6) {
        const auto *a = reinterpret_cast<const sockaddr_in6 *>(&la.addr);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    } else {
        const auto *a = reinterpret_cast<const sockaddr_in *>(&la.addr);
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    }
    if (port == 0) return "";
    std::string name = std::string("run-") + host + "-" + std::to_string(port);
    for (char &c : name)
        if (c == ':') c = '_';
    return name;
}

int usage_error(const std::string &message) {
    std::fprintf(stderr, "mp-sidecar: %s\nRun 'mp-sidecar --help' for usage.\n", message.c_str());
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    std::string listen = "127.0.0.1:13131";
    std::string backend_name = "memory";
    std::string identity = host_name();
    std::string log_level = "info";
    int ttl = 15;
    sc::KubeBackendOptions kube;
    bool no_install_crd = false;
    std::string state_dir = sc::RunState::default_dir();
    size_t max_locks = 65536;
    double reclaim_after = 30;
    sc::ServerOptions sopts;

    CLI::App app{
        "mp-sidecar: the Metaparticle lock service.\n"
        "Serves distributed locks over HTTP (protocol v1) to the Metaparticle libraries and to\n"
        "the original Metaparticle clients, and stores them in memory or in Kubernetes.",
        "mp-sidecar"};
    app.set_version_flag("--version", MP_VERSION_STRING);
    app.get_formatter()->column_width(34);
    app.add_option("--listen", listen,
                   "Address to serve on: HOST:PORT, [IPV6]:PORT, :PORT (all interfaces) or PORT "
                   "(127.0.0.1). Port 0 picks a free port; the startup line on stdout shows it.")
        ->default_str(listen);
    app.add_option("--backend", backend_name,
                   "Where locks are stored: memory (this process only; one machine), kubernetes "
                   "(Lock custom resources, metaparticle.io/v1) or lease (coordination.k8s.io/v1 "
                   "Leases, compatible with client-go leader election).")
        ->check(CLI::IsMember({"memory", "kubernetes", "lease"}))
        ->default_str(backend_name);
    app.add_option("--namespace", kube.namespace_,
                   "Kubernetes namespace for locks (default: the pod's namespace, else the "
                   "kubeconfig context's, else 'default').");
    app.add_option("--kubeconfig", kube.kubeconfig,
                   "Kubeconfig file (default: in-cluster service account, else $KUBECONFIG, else "
                   "~/.kube/config).");
    app.add_option("--context", kube.context, "Kubeconfig context to use (default: current-context).");
    app.add_flag("--no-install-crd", no_install_crd,
                 "Backend kubernetes: do not create the locks.metaparticle.io CRD when it is missing "
                 "(for clusters where it is installed from deploy/ and the sidecar has no "
                 "cluster-scoped rights).");
    app.add_option("--identity", identity,
                   "Owner used for requests that name none (empty-bodied PUTs of the original "
                   "clients, DELETE without ?owner=). Default: the host name (the pod name in Kubernetes).")
        ->default_str(identity);
    app.add_option("--ttl", ttl,
                   "TTL in seconds for JSON PUT/POST requests without \"ttlSeconds\" (empty-bodied "
                   "PUTs of the original clients always get 30).")
        ->check(CLI::Range(sc::HttpServer::kMinTtl, sc::HttpServer::kMaxTtl))
        ->default_val(ttl);
    app.add_option("--state-dir", state_dir,
                   "Backend memory: where the token epoch (a machine-wide counter) and the run marker live, so "
                   "fencing tokens keep increasing across restarts and a restart after a crash grants nothing until "
                   "the holders from before have noticed their loss.")
        ->default_str(state_dir);
    app.add_option("--max-locks", max_locks,
                   "Backend memory: the most lock names kept at once; past it, creating a lock answers 503 "
                   "TooManyLocks.")
        ->check(CLI::Range(size_t{1}, size_t{100000000}))
        ->default_val(max_locks);
    app.add_option("--reclaim-after", reclaim_after,
                   "Backend memory: forget a released lock after this many seconds (its fencing tokens keep "
                   "increasing: they come from one counter per run).")
        ->check(CLI::Range(0.0, 86400.0))
        ->default_val(reclaim_after);
    app.add_option("--max-connections", sopts.max_connections,
                   "Most client connections at once (also bounded by the descriptor limit); past it, new "
                   "connections are answered 503 Overloaded with Retry-After.")
        ->check(CLI::Range(size_t{1}, size_t{1000000}))
        ->default_val(sopts.max_connections);
    app.add_option("--max-connections-per-address", sopts.max_connections_per_address,
                   "Most client connections at once from one address.")
        ->check(CLI::Range(size_t{1}, size_t{1000000}))
        ->default_val(sopts.max_connections_per_address);
    double request_timeout = 10;
    app.add_option("--request-timeout", request_timeout,
                   "Seconds a client has to send a request's head and body once it started (slow clients are "
                   "answered 408 and closed).")
        ->check(CLI::Range(0.1, 3600.0))
        ->default_val(request_timeout);
    app.add_option("--log-level", log_level, "Logging to stderr: error, warn, info or debug.")
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}))
        ->default_str(log_level);
    app.footer(
        "HTTP API: GET/PUT/POST/DELETE /locks/{name} (PUT body {\"owner\",\"ttlSeconds\",\"session\"},\n"
        "?wait=SECONDS long-polls up to 300 s; DELETE ?owner=&token=), GET /locks[?limit=&continue=],\n"
        "GET /session (a client process's session stream), /healthz, /readyz, /metrics.\n"
        "On SIGTERM or SIGINT the sidecar stops accepting requests, answers waiting requests 503, tells\n"
        "every session its locks are lost, releases the locks of the sessions that acknowledge (close),\n"
        "leaves the others to expire by their TTL (their holders could not be told first), and exits 0.\n"
        "Exit codes: 0 clean shutdown, 1 could not start (backend or listen address), 2 bad usage.");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        return usage_error(e.what());
    }

    sc::log::Level level;
    sc::log::parse_level(log_level, &level);  // validated by CLI11 above
    sc::log::set_level(level);

    if (std::string why = sc::validate_owner(identity); !why.empty()) return usage_error("--identity: " + why);
    if (std::string why = sc::parse_listen(listen, &sopts.listen); !why.empty()) return usage_error("--listen: " + why);
    sopts.identity = identity;
    sopts.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(request_timeout * 1000));
    sopts.default_ttl_seconds = ttl;
    kube.install_crd = !no_install_crd;
    if (backend_name == "memory") {
        for (const char *flag : {"--namespace", "--kubeconfig", "--context", "--no-install-crd"})
            if (app.count(flag)) sc::log::warn(std::string(flag) + " has no effect with --backend=memory");
    }

    // Signals are taken synchronously by the main thread (sigwait); block them
    // before any thread starts so every thread inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client hanging up must not kill the sidecar

    std::unique_ptr<sc::Backend> backend;
    std::optional<sc::RunState> run_state;
    sc::ServiceOptions service_opts;
    try {
        if (backend_name == "memory") {
            run_state.emplace(state_dir, marker_name(sopts.listen));
            backend = sc::make_memory_backend(run_state->epoch(), max_locks);
            service_opts.reclaim_after = std::chrono::milliseconds(static_cast<int64_t>(reclaim_after * 1000));
            if (int grace = run_state->grace_seconds(); grace > 0) {
                service_opts.grace_until = mp::MonoClock::now() + std::chrono::seconds(grace);
                sc::log::warn("the previous mp-sidecar on this address stopped without releasing its locks (a crash?); "
                              "granting no lock for " + std::to_string(grace) +
                              " s, until every holder from before has noticed its loss");
            }
        } else if (backend_name == "kubernetes") {
            backend = sc::make_crd_backend(kube);
        } else {
            backend = sc::make_lease_backend(kube);
        }
        sopts.instance = sc::random_hex_id(8);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mp-sidecar: cannot set up the %s backend: %s\n", backend_name.c_str(), e.what());
        return 1;
    }
    sopts.durable = backend_name != "memory";

    sc::LockService service(*backend, service_opts);
    if (run_state) {
        sc::RunState *rs = &*run_state;
        service.set_grant_hook([rs](const sc::LockRecord &rec) { rs->note_ttl(rec.ttl_seconds); });
    }
    try {
        backend->start([&service](const std::string &name) { service.notify_changed(name); });
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mp-sidecar: cannot start the backend (%s): %s\n", backend->describe().c_str(), e.what());
        return 1;
    }

    sc::HttpServer server(service, *backend, sopts);
    try {
        server.start();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mp-sidecar: %s\n", e.what());
        backend->stop();
        return 1;
    }
    std::printf("mp-sidecar listening on %s (backend: %s)\n", server.url().c_str(), backend->describe().c_str());
    std::fflush(stdout);
    sc::log::info("mp-sidecar " MP_VERSION_STRING " serving on " + server.url() + " as identity '" + identity + "'");

    int sig = 0;
    sigwait(&stop_signals, &sig);
    sc::log::info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + "; shutting down");

    // No lock goes to anyone else before its holder has been told: sessions
    // hear "shutdown" and acknowledge by closing, which releases their locks;
    // locks of holders that cannot be told are left to expire by their TTL.
    server.stop_accepting();
    service.begin_shutdown();  // long-polls answer 503 now
    const uint64_t released_before = service.stats().session_releases;
    const size_t sessions = service.sessions().size();
    const size_t unacked = server.shutdown_sessions(std::chrono::seconds(5));
    const uint64_t released = service.stats().session_releases - released_before;
    const uint64_t left = service.stats().locks_held;
    server.stop();
    backend->stop();
    if (run_state && left == 0) run_state->clean_exit();
    sc::log::info("stopped: released " + std::to_string(released) + " lock(s) of " + std::to_string(sessions - unacked) +
                  " session(s) that acknowledged the shutdown; " + std::to_string(left) +
                  " lock(s) left to expire by their TTL (held without a session, or by " + std::to_string(unacked) +
                  " session(s) that did not acknowledge)");
    return 0;
}
