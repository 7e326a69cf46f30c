// The HTTP face of mp-sidecar: protocol v1 (SPEC section 5) over libmicrohttpd.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "backends/backend.h"
#include "lock_service.h"

struct MHD_Daemon;
struct MHD_Connection;

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

struct ServerOptions {
    ListenAddress listen;
    std::string identity;           // owner for requests that name none
    int default_ttl_seconds = 15;   // JSON PUT/POST without ttlSeconds
    int legacy_ttl_seconds = 30;    // empty-bodied PUT/POST (the original clients)
};

class HttpServer {
public:
    static constexpr size_t kMaxBody = 64 * 1024;
    static constexpr int kMinTtl = 1;
    static constexpr int kMaxTtl = 3600;

    HttpServer(LockService &service, Backend &backend, ServerOptions options);
    ~HttpServer();
    HttpServer(const HttpServer &) = delete;
    HttpServer &operator=(const HttpServer &) = delete;

    // Bind and start serving; throws std::runtime_error saying why not.
    void start();
    // The URL actually listened on, e.g. "http://127.0.0.1:13131".
    std::string url() const { return url_; }

    // Shutdown, in this order: stop_accepting(); (service.begin_shutdown());
    // wait_idle(); stop().
    void stop_accepting();
    // Wait until no request is in progress; false on timeout.
    bool wait_idle(std::chrono::milliseconds timeout);
    void stop();

    std::string metrics_text();

    // libmicrohttpd callbacks (public only so the C trampolines can reach them).
    struct Reply;
    struct RequestState;
    int handle(MHD_Connection *conn, const char *url, const char *method, const char *upload_data,
               size_t *upload_data_size, void **req_state);
    void completed(void **req_state);

private:
    Reply dispatch(MHD_Connection *conn, const std::string &method, const std::string &url, const std::string &body);
    Reply lock_request(MHD_Connection *conn, const std::string &method, const std::string &name,
                       const std::string &body);
    int send(MHD_Connection *conn, const std::string &method, const std::string &url, const Reply &reply);
    void count(const std::string &method, unsigned code);

    LockService &service_;
    Backend &backend_;
    ServerOptions opts_;
    MHD_Daemon *daemon_ = nullptr;
    int listen_fd_ = -1;
    bool quiesced_ = false;
    std::string url_;

    std::mutex mu_;
    std::condition_variable idle_cv_;
    int active_ = 0;  // requests between first callback and completion
    std::map<std::pair<std::string, unsigned>, uint64_t> requests_;  // (method, code) -> count
    std::atomic<bool> stopping_{false};
};

}  // namespace mp::sidecar
