// mp-sidecar: the Metaparticle lock service. One small process per pod (or per
// machine) that answers the HTTP lock protocol (SPEC section 5) and stores lock
// records in a backend: memory (default), Kubernetes custom resources, or
// Kubernetes Leases.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "backends/backend.h"
#include "backends/plugin_loader.h"
#include "http_server.h"
#include "lock_service.h"
#include "log.h"
#include "metaparticle.h"

namespace sc = mp::sidecar;

namespace {

std::string host_name() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) return "localhost";
    return host;
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
    app.add_option("--log-level", log_level, "Logging to stderr: error, warn, info or debug.")
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}))
        ->default_str(log_level);
    app.footer(
        "HTTP API: GET/PUT/POST/DELETE /locks/{name} (PUT body {\"owner\",\"ttlSeconds\"}, ?wait=SECONDS\n"
        "long-polls up to 300 s; DELETE ?owner=), GET /locks, /healthz, /readyz, /metrics.\n"
        "On SIGTERM or SIGINT the sidecar stops accepting requests, answers waiting requests 503,\n"
        "releases every lock acquired through it, and exits 0.\n"
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
    sc::ServerOptions sopts;
    if (std::string why = sc::parse_listen(listen, &sopts.listen); !why.empty()) return usage_error("--listen: " + why);
    sopts.identity = identity;
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
    try {
        if (backend_name == "memory")
            backend = sc::make_memory_backend();
        else  // kubernetes, lease: from the plugin, loaded only now
            backend = sc::make_kube_backend(backend_name, kube);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mp-sidecar: cannot set up the %s backend: %s\n", backend_name.c_str(), e.what());
        return 1;
    }

    sc::LockService service(*backend);
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

    server.stop_accepting();
    service.begin_shutdown();  // long-polls answer 503 now
    if (!server.wait_idle(std::chrono::seconds(10)))
        sc::log::warn("some requests were still running after 10 s; closing their connections");
    server.stop();
    int released = service.release_all();
    backend->stop();
    sc::log::info("stopped (released " + std::to_string(released) + " lock" + (released == 1 ? "" : "s") + ")");
    return 0;
}
