#include "sync/sidecar_client.h"

#include "json/json.h"

#include <algorithm>
#include <cstdio>

namespace mp::sync {
namespace {

std::string excerpt(const std::string &body) {
    std::string e = body.substr(0, 200);
    for (char &c : e)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return e.empty() ? "an empty body" : "'" + e + (body.size() > 200 ? "...'" : "'");
}

json::Ptr parse_object(const std::string &body, const std::string &what) {
    auto j = json::parse(body);
    if (!j || !cJSON_IsObject(j.get()))
        throw Error(MP_EPROTOCOL, what + ": the sidecar answered with something that is not lock JSON: " +
                                      excerpt(body));
    return j;
}

// A 409's lock JSON (the current holder): read leniently, it decides nothing
// for us beyond "not ours".
LockInfo parse_holder(const std::string &body, const std::string &what) {
    auto j = parse_object(body, what);
    LockInfo info;
    info.owner = json::get_string(j.get(), "owner").value_or("");
    auto token = json::get_int(j.get(), "token");
    info.token = token && *token > 0 ? static_cast<uint64_t>(*token) : 0;
    info.held = json::get_bool(j.get(), "held").value_or(!info.owner.empty());
    info.reason = json::get_string(j.get(), "reason").value_or("");
    return info;
}

// A 200 to a PUT grants or renews OUR hold: it must say so exactly (README "Protocol (v1)":
// owner = requester, token a JSON integer >= 1 and < 2^63). cJSON keeps
// numbers as doubles, so tokens are exact only up to 2^53; larger ones are
// refused rather than rounded.
LockInfo parse_grant(const std::string &body, const std::string &what, const std::string &owner,
                     uint64_t min_token) {
    auto j = parse_object(body, what);
    LockInfo info;
    auto got_owner = json::get_string(j.get(), "owner");
    if (!got_owner)
        throw Error(MP_EPROTOCOL, what + ": the sidecar granted it without naming the owner: " + excerpt(body));
    if (*got_owner != owner)
        throw Error(MP_EPROTOCOL, what + ": the sidecar answered 200 but names '" + *got_owner +
                                      "' as the owner, not us ('" + owner + "')");
    info.owner = *got_owner;
    auto token = json::get_int(j.get(), "token");
    if (!token || *token < 1)
        throw Error(MP_EPROTOCOL, what + ": the sidecar granted it without a valid fencing token (a JSON integer "
                                         ">= 1 is required): " + excerpt(body));
    info.token = static_cast<uint64_t>(*token);
    if (info.token < min_token)
        throw Error(MP_EPROTOCOL, what + ": the sidecar granted fencing token " + std::to_string(info.token) +
                                      ", lower than token " + std::to_string(min_token) +
                                      " it gave this handle before; fencing tokens must never go backwards");
    info.held = true;
    info.session = json::get_string(j.get(), "session").value_or("");
    return info;
}

struct ErrorBody {
    std::string message, reason;
};

ErrorBody error_of(const std::string &body) {
    auto j = json::parse(body);
    ErrorBody e;
    e.message = json::get_string(j.get(), "message").value_or(body.substr(0, 200));
    e.reason = json::get_string(j.get(), "reason").value_or("");
    return e;
}

}  // namespace

SidecarClient::SidecarClient(std::string base_url) : base_url_(std::move(base_url)) {}

http::Response SidecarClient::send(http::Request &req) {
    req.max_response_bytes = kMaxAnswerBytes;
    try {
        return http_.request(req);
    } catch (const http::TransportError &e) {
        if (e.timed_out())
            throw Error(MP_ETIMEOUT, "mp-sidecar at " + base_url_ + " did not answer in time (" + e.what() + ")");
        if (e.connection_dropped())
            throw Error(MP_ESIDECAR, "mp-sidecar at " + base_url_ +
                                         " accepted the connection, then closed the connection without an answer (" +
                                         e.what() + "); it may be overloaded or stopping: retry later");
        if (e.connection_refused())
            throw Error(MP_ESIDECAR, "cannot reach mp-sidecar at " + base_url_ + " (" + e.what() +
                                         "). Start it with `mp-sidecar`, or set METAPARTICLE_SIDECAR to its address.");
        throw Error(MP_ESIDECAR, "cannot talk to mp-sidecar at " + base_url_ + " (" + e.what() +
                                     "); check METAPARTICLE_SIDECAR");
    } catch (const Error &e) {
        if (e.code() == MP_EPROTOCOL) throw Error(MP_EPROTOCOL, "mp-sidecar at " + base_url_ + ": " + e.what());
        throw;
    }
}

void SidecarClient::fail_status(const http::Request &req, const http::Response &resp) {
    std::string what = req.method + " " + req.url;
    ErrorBody e = error_of(resp.body);
    std::string at = "mp-sidecar at " + base_url_;
    if (resp.status == 400) throw Error(MP_EINVAL, at + " rejected the request: " + e.message);
    if (resp.status == 503) {
        if (e.reason == "ShuttingDown" || (e.reason.empty() && e.message.find("shutting down") != std::string::npos))
            throw Error(MP_ESHUTDOWN, at + " is shutting down (" + e.message + "); retry once it is back");
        if (e.reason == "Overloaded" || e.reason == "TooManyLocks")
            throw Error(MP_ELIMIT, at + " refused the request, a limit is reached: " + e.message +
                                       ". Retry later" +
                                       (e.reason == "TooManyLocks" ? ", or release locks you no longer need." : "."));
    }
    if (resp.status == 500 && e.reason == "Internal")
        throw Error(MP_ERROR, at + " failed with an internal error (a bug in mp-sidecar): " + e.message);
    if (resp.status >= 500)
        throw Error(MP_EBACKEND, at + " could not reach its storage backend: " + e.message);
    throw Error(MP_EPROTOCOL, what + ": unexpected HTTP " + std::to_string(resp.status) +
                                  (e.reason.empty() ? "" : " (" + e.reason + ")") + ": " + e.message);
}

PutResult SidecarClient::put(const std::string &name, const std::string &owner, int ttl_seconds, long wait_ms,
                             long timeout_ms, const std::atomic<bool> *cancel, const std::string &session,
                             uint64_t min_token) {
    http::Request req;
    req.method = "PUT";
    req.url = base_url_ + "/locks/" + name;
    if (wait_ms > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", wait_ms / 1000.0);
        req.url += std::string("?wait=") + buf;
    }
    auto body = json::object();
    json::set_string(body.get(), "owner", owner);
    json::set_int(body.get(), "ttlSeconds", ttl_seconds);
    if (!session.empty()) json::set_string(body.get(), "session", session);
    req.body = json::print(body.get());
    req.headers = {"Content-Type: application/json"};
    req.timeout_ms = timeout_ms;
    if (timeout_ms > 0) req.connect_timeout_ms = std::min(req.connect_timeout_ms, timeout_ms);
    req.cancel = cancel;
    auto resp = send(req);
    std::string what = "lock '" + name + "'";
    if (resp.status == 200) return {true, parse_grant(resp.body, what, owner, min_token)};
    if (resp.status == 409) return {false, parse_holder(resp.body, what)};
    fail_status(req, resp);
}

ReleaseResult SidecarClient::release(const std::string &name, const std::string &owner, uint64_t token,
                                     long timeout_ms, LockInfo *holder) {
    http::Request req;
    req.method = "DELETE";
    req.url = base_url_ + "/locks/" + name + "?owner=" + http::url_escape(owner);
    if (token) req.url += "&token=" + std::to_string(token);
    req.timeout_ms = timeout_ms;
    if (timeout_ms > 0) req.connect_timeout_ms = std::min(req.connect_timeout_ms, timeout_ms);
    auto resp = send(req);
    if (resp.status == 200) return ReleaseResult::Released;
    if (resp.status == 404) return ReleaseResult::NotOurs;
    if (resp.status == 409) {
        if (holder) {
            try {
                *holder = parse_holder(resp.body, "lock '" + name + "'");
            } catch (const Error &) {
                // The 409 alone says it is not ours; its body is only detail.
            }
        }
        return ReleaseResult::NotOurs;
    }
    fail_status(req, resp);
}

std::optional<LockInfo> SidecarClient::get(const std::string &name, long timeout_ms) {
    http::Request req;
    req.url = base_url_ + "/locks/" + name;
    req.timeout_ms = timeout_ms;
    auto resp = send(req);
    if (resp.status == 404) return std::nullopt;
    if (resp.status == 200) return parse_holder(resp.body, "lock '" + name + "'");
    fail_status(req, resp);
}

SidecarPool::Lease SidecarPool::take() {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (!idle_.empty()) {
            auto c = std::move(idle_.back());
            idle_.pop_back();
            return Lease(*this, std::move(c));
        }
    }
    return Lease(*this, std::make_unique<SidecarClient>(base_url_));
}

void SidecarPool::put_back(std::unique_ptr<SidecarClient> c) {
    std::lock_guard<std::mutex> g(mu_);
    if (idle_.size() < 4) idle_.push_back(std::move(c));
}

}  // namespace mp::sync
