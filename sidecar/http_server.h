// The HTTP face of mp-sidecar: protocol v1 (README "Protocol") over
// Boost.Beast on one Asio event loop.
//
// Why Beast rather than libmicrohttpd: the sidecar must park thousands of
// long-polls without a thread each, notice at once when a parked client hangs
// up, bound how long a request's head and body may take (slowloris), answer
// 503 + Retry-After past its connection caps instead of closing silently, and
// reject ambiguous requests (conflicting Content-Length, malformed request
// lines) with a 400. libmicrohttpd 0.9.75 (Debian 12) watches no suspended
// socket, has only an idle timeout that every byte resets, closes over-limit
// connections unanswered and accepts conflicting Content-Length headers.
// Beast's parser is strict, and Asio gives per-operation deadlines and
// readiness waits; both are header-only, so the sidecar also stops loading
// GnuTLS it never used.
//
// Threads: one event-loop thread does all socket work. Lock operations run
// inline on it for a backend that never blocks (memory); for the Kubernetes
// backends they run on a small worker pool and post their answer back.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "backends/backend.h"
#include "lock_service.h"

namespace mp::sidecar {

// An address to listen on, parsed from --listen.
struct ListenAddress {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

// Accepts "HOST:PORT", "[IPV6]:PORT", ":PORT" (all interfaces) and "PORT"
// (127.0.0.1). PORT 0 picks a free port. Returns "" or what is wrong.
std::string parse_listen(const std::string &text, ListenAddress *out);

// Owners (holder identities) are opaque strings chosen by clients; they must be
// non-empty ("" means free), printable and at most 1024 bytes, so they fit any
// backend and log line. Returns "" or what is wrong.
std::string validate_owner(const std::string &owner);

// `s` with every byte outside printable ASCII written as \xNN, so nothing a
// client sends can forge or break a log line.
std::string printable(const std::string &s);

struct ServerOptions {
    ListenAddress listen;
    std::string identity;           // owner for requests that name none
    int default_ttl_seconds = 15;   // JSON PUT/POST without ttlSeconds
    int legacy_ttl_seconds = 30;    // empty-bodied PUT/POST (the original clients)
    size_t max_connections = 20000;              // in total (also bounded by RLIMIT_NOFILE)
    size_t max_connections_per_address = 12000;  // from one client address
    std::chrono::milliseconds request_timeout{10000};  // a request's head and body, from its first byte
    std::chrono::milliseconds idle_timeout{60000};     // a keep-alive connection between requests
    std::chrono::milliseconds heartbeat{5000};         // session pings
    int worker_threads = 4;                            // for a blocking backend
    std::string instance;           // random id of this run, in session hellos
    bool durable = false;           // whether locks survive this process (session hellos)
};

class HttpServer {
public:
    static constexpr size_t kMaxBody = 64 * 1024;
    static constexpr size_t kMaxHeader = 8 * 1024;
    static constexpr int kMinTtl = 1;
    static constexpr int kMaxTtl = 3600;

    HttpServer(LockService &service, Backend &backend, ServerOptions options);
    ~HttpServer();
    HttpServer(const HttpServer &) = delete;
    HttpServer &operator=(const HttpServer &) = delete;

    // Bind and start serving; throws std::runtime_error saying why not.
    void start();
    // The URL actually listened on, e.g. "http://127.0.0.1:13131".
    std::string url() const;

    // Shutdown, in this order: stop_accepting(); service.begin_shutdown();
    // shutdown_sessions(); stop().
    void stop_accepting();
    // Tell every session that the sidecar stops (their holds are lost) and
    // wait until each has closed its stream (acknowledged: its holds are then
    // released) or `timeout` passed. Returns how many did not acknowledge.
    size_t shutdown_sessions(std::chrono::milliseconds timeout);
    void stop();

    std::string metrics_text();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace mp::sidecar
