// Client of the mp-sidecar HTTP protocol (README "Protocol (v1)"). Translates HTTP
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
    std::string session;  // the session the hold is tied to ("" = none)
    std::string reason;   // 409 only: e.g. "Recovering"
};

struct PutResult {
    bool acquired = false;  // false: someone else holds it (409)
    LockInfo lock;          // the lock now (ours when acquired, the holder's otherwise)
};

enum class ReleaseResult {
    Released,  // 200
    NotOurs,   // 404 (no such hold) or 409 (another holder, or another hold of ours)
};

// Answers are capped at this size (a hostile or broken server cannot make us
// buffer without bound).
constexpr size_t kMaxAnswerBytes = 1u << 20;

class SidecarClient {
public:
    explicit SidecarClient(std::string base_url);

    // PUT /locks/{name}?wait=...: acquire, or renew when `owner` holds it.
    // `wait_ms` > 0 long-polls on the sidecar. `timeout_ms` bounds the whole
    // request (connecting included). `session` ("" = none) ties the hold to
    // the process's session. A 200 must be a lock JSON naming `owner` with a
    // token that is a JSON integer >= max(1, min_token); anything else is
    // MP_EPROTOCOL. Throws mp::Error: MP_ESIDECAR (unreachable, or the
    // connection dropped without an answer), MP_ETIMEOUT, MP_ECANCELED,
    // MP_EINVAL (400), MP_ESHUTDOWN, MP_ELIMIT, MP_EBACKEND, MP_ERROR (500),
    // MP_EPROTOCOL.
    PutResult put(const std::string &name, const std::string &owner, int ttl_seconds, long wait_ms,
                  long timeout_ms, const std::atomic<bool> *cancel, const std::string &session = "",
                  uint64_t min_token = 0);

    // DELETE /locks/{name}?owner=...[&token=T] (token 0: any hold of owner).
    // `holder` (optional) receives the 409's holder. Throws like put().
    ReleaseResult release(const std::string &name, const std::string &owner, uint64_t token, long timeout_ms,
                          LockInfo *holder = nullptr);

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
