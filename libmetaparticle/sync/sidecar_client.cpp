#include "sync/sidecar_client.h"

#include "json/json.h"

namespace mp::sync {
namespace {

LockInfo parse_lock(const std::string &body, const std::string &what) {
    auto j = json::parse(body);
    if (!j || !cJSON_IsObject(j.get()))
        throw Error(MP_EPROTOCOL, what + ": the sidecar answered with something that is not lock JSON: " +
                                      body.substr(0, 200));
    LockInfo info;
    info.owner = json::get_string(j.get(), "owner").value_or("");
    info.token = static_cast<uint64_t>(json::get_int(j.get(), "token").value_or(0));
    info.held = json::get_bool(j.get(), "held").value_or(!info.owner.empty());
    return info;
}

std::string message_of(const std::string &body) {
    auto j = json::parse(body);
    if (auto m = json::get_string(j.get(), "message")) return *m;
    return body.substr(0, 200);
}

}  // namespace

SidecarClient::SidecarClient(std::string base_url) : base_url_(std::move(base_url)) {}

http::Response SidecarClient::send(http::Request &req) {
    try {
        return http_.request(req);
    } catch (const http::TransportError &e) {
        if (e.timed_out())
            throw Error(MP_ETIMEOUT, "mp-sidecar at " + base_url_ + " did not answer in time (" + e.what() + ")");
        throw Error(MP_ESIDECAR, "cannot reach mp-sidecar at " + base_url_ + " (" + e.what() +
                                     "). Start it with `mp-sidecar`, or set METAPARTICLE_SIDECAR to its address.");
    }
}

void SidecarClient::fail_status(const http::Request &req, const http::Response &resp) {
    std::string what = req.method + " " + req.url;
    std::string msg = message_of(resp.body);
    if (resp.status == 400) throw Error(MP_EINVAL, "mp-sidecar rejected the request: " + msg);
    if (resp.status >= 500)
        throw Error(MP_EBACKEND, "mp-sidecar at " + base_url_ + " could not reach its storage backend: " + msg);
    throw Error(MP_EPROTOCOL, what + ": unexpected HTTP " + std::to_string(resp.status) + ": " + msg);
}

PutResult SidecarClient::put(const std::string &name, const std::string &owner, int ttl_seconds, long wait_ms,
                             long timeout_ms, const std::atomic<bool> *cancel) {
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
    req.body = json::print(body.get());
    req.headers = {"Content-Type: application/json"};
    req.timeout_ms = timeout_ms;
    req.cancel = cancel;
    auto resp = send(req);
    if (resp.status == 200) return {true, parse_lock(resp.body, "acquire '" + name + "'")};
    if (resp.status == 409) return {false, parse_lock(resp.body, "acquire '" + name + "'")};
    fail_status(req, resp);
}

bool SidecarClient::release(const std::string &name, const std::string &owner, long timeout_ms) {
    http::Request req;
    req.method = "DELETE";
    req.url = base_url_ + "/locks/" + name + "?owner=" + http::url_escape(owner);
    req.timeout_ms = timeout_ms;
    auto resp = send(req);
    if (resp.status == 200) return true;
    if (resp.status == 404 || resp.status == 409) return false;
    fail_status(req, resp);
}

std::optional<LockInfo> SidecarClient::get(const std::string &name, long timeout_ms) {
    http::Request req;
    req.url = base_url_ + "/locks/" + name;
    req.timeout_ms = timeout_ms;
    auto resp = send(req);
    if (resp.status == 404) return std::nullopt;
    if (resp.status == 200) return parse_lock(resp.body, "read '" + name + "'");
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
