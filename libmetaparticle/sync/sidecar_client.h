// Client of the mp-sidecar HTTP protocol (SPEC section 5). Translates HTTP
// answers into results and mp::Error codes; knows nothing of lock timing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/client.h"

namespace mp::sync {

struct LockInfo {
    std::string owner;
    uint64_t token = 0;
    bool held = false;
};

struct PutResult {
    bool acquired = false;  // false: someone else holds it (409)
    LockInfo lock;          // the lock now (ours when acquired, the holder's otherwise)
};

class SidecarClient {
public:
    explicit SidecarClient(std::string base_url);

    // PUT /locks/{name}?wait=...: acquire, or renew when `owner` holds it.
    // `wait_ms` > 0 long-polls on the sidecar. `timeout_ms` bounds the whole
    // request. Throws mp::Error: MP_ESIDECAR (unreachable), MP_ETIMEOUT,
    // MP_ECANCELED, MP_EINVAL (400), MP_EBACKEND (5xx), MP_EPROTOCOL.
    PutResult put(const std::string &name, const std::string &owner, int ttl_seconds, long wait_ms,
                  long timeout_ms, const std::atomic<bool> *cancel);

    // DELETE /locks/{name}?owner=...; returns false when the sidecar says the
    // lock is not ours (404/409).
    bool release(const std::string &name, const std::string &owner, long timeout_ms);

    // GET /locks/{name}; nullopt on 404.
    std::optional<LockInfo> get(const std::string &name, long timeout_ms);

    const std::string &base_url() const { return base_url_; }

private:
    http::Response send(http::Request &req);
    [[noreturn]] void fail_status(const http::Request &req, const http::Response &resp);

    std::string base_url_;
    http::Client http_;
};

// A few SidecarClients for one lock, so the caller's thread and the lock's
// renewal thread each keep their own keep-alive connection.
class SidecarPool {
public:
    explicit SidecarPool(std::string base_url) : base_url_(std::move(base_url)) {}

    class Lease {
    public:
        Lease(SidecarPool &pool, std::unique_ptr<SidecarClient> c) : pool_(pool), client_(std::move(c)) {}
        ~Lease() { pool_.put_back(std::move(client_)); }
        SidecarClient *operator->() { return client_.get(); }

    private:
        SidecarPool &pool_;
        std::unique_ptr<SidecarClient> client_;
    };

    Lease take();
    const std::string &base_url() const { return base_url_; }

private:
    void put_back(std::unique_ptr<SidecarClient> c);
    std::string base_url_;
    std::mutex mu_;
    std::vector<std::unique_ptr<SidecarClient>> idle_;
};

}  // namespace mp::sync
