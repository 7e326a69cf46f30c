// Threading model: libmicrohttpd with one thread per connection
// (MHD_USE_THREAD_PER_CONNECTION). A long-poll (`PUT ?wait=`) then simply
// blocks its own thread on LockService's condition variable, and every other
// client keeps being served by its own thread. Suspend/resume would save a
// thread per waiting client but needs a second wake-up path from LockService
// into MHD; at the sizes a sidecar sees (a few local clients, at most
// kMaxConnections) threads with small stacks are cheaper in code and risk.
#include "http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/names.h"
#include "json/json.h"
#include "log.h"

namespace mp::sidecar {
namespace {

constexpr unsigned kMaxConnections = 512;
constexpr size_t kThreadStack = 256 * 1024;
// Idle keep-alive connections are closed after this long; each one costs a thread.
constexpr unsigned kIdleTimeoutSeconds = 60;

const char *const kLockMethods = "GET, HEAD, PUT, POST, DELETE";
const char *const kReadMethods = "GET, HEAD";

}  // namespace

struct HttpServer::Reply {
    unsigned code = 200;
    std::string body;
    std::string content_type = "application/json";
    std::string allow;  // Allow header for 405
};

struct HttpServer::RequestState {
    std::string body;
    bool too_large = false;
    bool answered = false;  // a response is already queued (early 413)
};

namespace {

HttpServer::Reply json_reply(unsigned code, const cJSON *j) {
    HttpServer::Reply r;
    r.code = code;
    r.body = json::print(j) + "\n";
    return r;
}

HttpServer::Reply error_reply(unsigned code, const std::string &message) {
    auto j = json::object();
    json::set_string(j.get(), "message", message);
    return json_reply(code, j.get());
}

HttpServer::Reply text_reply(unsigned code, const std::string &text) {
    HttpServer::Reply r;
    r.code = code;
    r.body = text;
    r.content_type = "text/plain; charset=utf-8";
    return r;
}

HttpServer::Reply method_not_allowed(const std::string &method, const std::string &url, const char *allow) {
    HttpServer::Reply r = error_reply(405, "method " + method + " is not allowed on " + url + "; allowed: " + allow);
    r.allow = allow;
    return r;
}

json::Ptr lock_json(const LockView &v) {
    const LockRecord &r = v.record;
    auto j = json::object();
    json::set_string(j.get(), "name", r.name);
    json::set_string(j.get(), "owner", r.owner);
    json::set_int(j.get(), "token", static_cast<int64_t>(r.token));
    json::set_int(j.get(), "ttlSeconds", r.ttl_seconds);
    json::set_string(j.get(), "acquireTime", r.acquire_time);
    json::set_string(j.get(), "renewTime", r.renew_time);
    // Informational (remote clocks are never trusted for decisions): when the
    // holder's TTL runs out if it does not renew; for a free lock, when it was freed.
    std::string expiry = r.renew_time;
    if (!r.owner.empty())
        if (auto t = parse_rfc3339(r.renew_time)) expiry = rfc3339(*t + std::chrono::seconds(r.ttl_seconds));
    json::set_string(j.get(), "expiry", expiry);
    json::set_bool(j.get(), "held", v.held);
    return j;
}

HttpServer::Reply lock_reply(unsigned code, const LockView &v) {
    auto j = lock_json(v);
    return json_reply(code, j.get());
}

// Query argument lookup that tells "absent" from "present but empty".
std::optional<std::string> query_arg(MHD_Connection *conn, const char *key) {
    const char *value = nullptr;
    size_t len = 0;
    if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, key, std::strlen(key), &value, &len) != MHD_YES)
        return std::nullopt;
    return value ? std::string(value, len) : std::string();
}

bool only_whitespace(const std::string &s) {
    for (char c : s)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
    return true;
}

// A client that gave up on its long-poll closed its end of the socket: a
// zero-length peek says so without consuming a pipelined request.
bool peer_closed(MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return false;
    int fd = info->connect_fd;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;
}

std::string method_label(const std::string &m) {
    static const char *const known[] = {"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"};
    for (const char *k : known)
        if (m == k) return m;
    return "OTHER";  // bounded label set, whatever clients send
}

MHD_Result on_request(void *cls, MHD_Connection *conn, const char *url, const char *method, const char *,
                      const char *upload_data, size_t *upload_data_size, void **req_cls) {
    auto *self = static_cast<HttpServer *>(cls);
    return static_cast<MHD_Result>(self->handle(conn, url, method, upload_data, upload_data_size, req_cls));
}

void on_completed(void *cls, MHD_Connection *, void **req_cls, MHD_RequestTerminationCode) {
    static_cast<HttpServer *>(cls)->completed(req_cls);
}

void on_mhd_log(void *, const char *fmt, va_list ap) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    std::string msg(buf);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
    log::debug("http: " + msg);  // MHD reports client misbehaviour here; not our errors
}

std::string format_url(const sockaddr_storage &ss) {
    char host[INET6_ADDRSTRLEN] = {0};
    unsigned port = 0;
    if (ss.ss_family == AF_INET6) {
        const auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        return "http://[" + std::string(host) + "]:" + std::to_string(port);
    }
    const auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return "http://" + std::string(host) + ":" + std::to_string(port);
}

}  // namespace

namespace {
// Kubernetes (and JSON consumers generally) reject strings that are not UTF-8.
bool valid_utf8(const std::string &s) {
    static const uint32_t min_for_len[] = {0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        size_t extra;  // continuation bytes after the lead byte
        uint32_t cp;
        if (c < 0x80) { extra = 0; cp = c; }
        else if ((c & 0xe0) == 0xc0) { extra = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { extra = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { extra = 3; cp = c & 0x07; }
        else return false;
        if (i + extra >= s.size()) return false;  // truncated sequence
        for (size_t k = 1; k <= extra; ++k) {
            const unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        // Reject overlong forms, UTF-16 surrogates and code points past U+10FFFF.
        if (cp < min_for_len[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += extra + 1;
    }
    return true;
}
}  // namespace

std::string validate_owner(const std::string &owner) {
    if (owner.empty()) return "owner must not be empty";
    if (owner.size() > 1024) return "owner is longer than 1024 bytes";
    for (unsigned char c : owner)
        if (c < 0x20 || c == 0x7f) return "owner must not contain control characters";
    if (!valid_utf8(owner)) return "owner must be valid UTF-8";
    return "";
}

std::string parse_listen(const std::string &text, ListenAddress *out) {
    std::string host, port;
    if (text.empty()) return "listen address is empty";
    if (text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return "listen address '" + text + "' is not [IPV6]:PORT";
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else if (auto colon = text.rfind(':'); colon != std::string::npos) {
        if (text.find(':') != colon) return "listen address '" + text + "': write IPv6 addresses as [ADDRESS]:PORT";
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.empty()) host = "0.0.0.0";  // ":PORT" = every interface, as in Go
    } else {
        host = "127.0.0.1";
        port = text;
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::atoi(port.c_str()) > 65535)
        return "listen address '" + text + "': port must be a number from 0 to 65535 (0 = any free port)";

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo *res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res) return "listen address '" + text + "': cannot resolve '" + host + "': " + gai_strerror(rc);
    std::memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return "";
}

HttpServer::HttpServer(LockService &service, Backend &backend, ServerOptions options)
    : service_(service), backend_(backend), opts_(std::move(options)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
    // Our own socket, so a failure names the errno and port 0 is easy to read back.
    const auto &la = opts_.listen;
    int fd = socket(la.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("cannot create a socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<const sockaddr *>(&la.addr), la.len) != 0 || listen(fd, 128) != 0) {
        int err = errno;
        close(fd);
        throw std::runtime_error("cannot listen on " + format_url(la.addr).substr(7) + ": " + std::strerror(err));
    }
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr *>(&bound), &blen);
    url_ = format_url(bound);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (la.addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &on_request, this,
                               MHD_OPTION_LISTEN_SOCKET, fd,
                               MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,
                               MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds,
                               MHD_OPTION_THREAD_STACK_SIZE, kThreadStack,
                               MHD_OPTION_NOTIFY_COMPLETED, &on_completed, this,
                               MHD_OPTION_EXTERNAL_LOGGER, &on_mhd_log, nullptr,
                               MHD_OPTION_END);
    if (!daemon_) {
        close(fd);
        throw std::runtime_error("cannot start the HTTP server on " + url_ + " (libmicrohttpd refused to start)");
    }
    listen_fd_ = fd;
}

void HttpServer::stop_accepting() {
    stopping_ = true;
    if (daemon_ && !quiesced_) {
        // On success the listening socket is handed back to us: close it now so
        // new clients are refused at once instead of queueing in the backlog.
        // On failure MHD keeps it and closes it in MHD_stop_daemon.
        quiesced_ = MHD_quiesce_daemon(daemon_) != MHD_INVALID_SOCKET;
        if (quiesced_ && listen_fd_ >= 0) {
            close(listen_fd_);
            listen_fd_ = -1;
        }
    }
}

bool HttpServer::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    return idle_cv_.wait_for(lk, timeout, [&] { return active_ == 0; });
}

void HttpServer::stop() {
    if (daemon_) {
        MHD_stop_daemon(daemon_);  // closes the listening socket unless quiesced
        daemon_ = nullptr;
        listen_fd_ = -1;
    }
}

void HttpServer::count(const std::string &method, unsigned code) {
    std::lock_guard<std::mutex> g(mu_);
    ++requests_[{method_label(method), code}];
}

void HttpServer::completed(void **req_state) {
    auto *st = static_cast<RequestState *>(*req_state);
    if (!st) return;
    delete st;
    *req_state = nullptr;
    std::lock_guard<std::mutex> g(mu_);
    if (--active_ == 0) idle_cv_.notify_all();
}

int HttpServer::send(MHD_Connection *conn, const std::string &method, const std::string &url, const Reply &reply) {
    count(method, reply.code);
    log::debug(method + " " + url + " -> " + std::to_string(reply.code));
    MHD_Response *resp =
        MHD_create_response_from_buffer(reply.body.size(), const_cast<char *>(reply.body.data()), MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type.c_str());
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (!reply.allow.empty()) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, reply.allow.c_str());
    MHD_Result rc = MHD_queue_response(conn, reply.code, resp);
    MHD_destroy_response(resp);
    return rc;
}

int HttpServer::handle(MHD_Connection *conn, const char *url_c, const char *method_c, const char *upload_data,
                       size_t *upload_data_size, void **req_state) {
    const std::string method = method_c ? method_c : "";
    const std::string url = url_c ? url_c : "";
    auto *st = static_cast<RequestState *>(*req_state);
    if (!st) {
        // First call: headers only. Refuse an announced oversized body at once,
        // before the client sends it.
        st = new RequestState();
        *req_state = st;
        {
            std::lock_guard<std::mutex> g(mu_);
            ++active_;
        }
        if (const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
            char *end = nullptr;
            errno = 0;
            unsigned long long n = std::strtoull(cl, &end, 10);
            if (errno == ERANGE || n > kMaxBody) {
                st->too_large = true;
                st->answered = true;
                return send(conn, method, url,
                            error_reply(413, "request body is larger than " + std::to_string(kMaxBody) + " bytes"));
            }
        }
        return MHD_YES;
    }
    if (st->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!st->too_large) {
            if (st->body.size() + *upload_data_size > kMaxBody) {
                st->too_large = true;  // chunked upload grew too big: drop it, answer 413 at the end
                st->body.clear();
                st->body.shrink_to_fit();
            } else {
                st->body.append(upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->too_large)
        return send(conn, method, url, error_reply(413, "request body is larger than " + std::to_string(kMaxBody) + " bytes"));

    Reply reply;
    try {
        reply = dispatch(conn, method, url, st->body);
    } catch (const BackendError &e) {
        log::warn(method + " " + url + ": backend failure: " + e.what());
        reply = error_reply(503, std::string("lock backend failure: ") + e.what());
    } catch (const std::exception &e) {
        log::error(method + " " + url + ": internal error: " + e.what());
        reply = error_reply(500, std::string("internal error in mp-sidecar: ") + e.what());
    }
    return send(conn, method, url, reply);
}

HttpServer::Reply HttpServer::dispatch(MHD_Connection *conn, const std::string &method, const std::string &url,
                                       const std::string &body) {
    const bool read = method == "GET" || method == "HEAD";
    if (url == "/healthz") {
        if (!read) return method_not_allowed(method, url, kReadMethods);
        return text_reply(200, "ok\n");
    }
    if (url == "/readyz") {
        if (!read) return method_not_allowed(method, url, kReadMethods);
        if (stopping_) return error_reply(503, "mp-sidecar is shutting down");
        std::string why;
        bool ok = false;
        try {
            ok = backend_.ready(&why);
        } catch (const std::exception &e) {
            why = e.what();
        }
        if (!ok) return error_reply(503, "lock backend not ready: " + (why.empty() ? std::string("unknown reason") : why));
        return text_reply(200, "ok\n");
    }
    if (url == "/metrics") {
        if (!read) return method_not_allowed(method, url, kReadMethods);
        Reply r = text_reply(200, metrics_text());
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        return r;
    }
    if (url == "/locks") {
        if (!read) return method_not_allowed(method, url, kReadMethods);
        auto arr = json::array();
        for (const auto &v : service_.list()) cJSON_AddItemToArray(arr.get(), lock_json(v).release());
        return json_reply(200, arr.get());
    }
    static const std::string prefix = "/locks/";
    if (url.compare(0, prefix.size(), prefix) == 0) return lock_request(conn, method, url.substr(prefix.size()), body);
    return error_reply(404, "no such path: " + url + " (the API is under /locks; see also /healthz, /readyz, /metrics)");
}

HttpServer::Reply HttpServer::lock_request(MHD_Connection *conn, const std::string &method, const std::string &name,
                                           const std::string &body) {
    const bool is_get = method == "GET" || method == "HEAD";
    if (!is_get && method != "PUT" && method != "POST" && method != "DELETE")
        return method_not_allowed(method, "/locks/{name}", kLockMethods);
    if (std::string why = validate_lock_name(name); !why.empty()) return error_reply(400, why);

    if (is_get) {
        LockView v;
        if (!service_.get(name, &v)) return error_reply(404, "lock '" + name + "' does not exist");
        return lock_reply(200, v);
    }

    if (method == "DELETE") {
        std::string owner = opts_.identity;
        if (auto q = query_arg(conn, "owner")) {
            if (std::string why = validate_owner(*q); !why.empty()) return error_reply(400, "query parameter " + why);
            owner = *q;
        }
        Result r = service_.release(name, owner);
        switch (r.outcome) {
        case Outcome::NotFound: return error_reply(404, "lock '" + name + "' does not exist");
        case Outcome::Conflict: return lock_reply(409, r.view);
        default: return lock_reply(200, r.view);
        }
    }

    // PUT and POST: who, and for how long.
    std::string owner = opts_.identity;
    int ttl = opts_.default_ttl_seconds;
    if (only_whitespace(body)) {
        ttl = opts_.legacy_ttl_seconds;  // the original clients: empty body, 30 s TTL
    } else {
        json::Ptr j = json::parse(body);
        if (!j) return error_reply(400, "request body is not valid JSON");
        if (!cJSON_IsObject(j.get()))
            return error_reply(400, "request body must be a JSON object like {\"owner\": \"me\", \"ttlSeconds\": 15}");
        if (const cJSON *o = cJSON_GetObjectItemCaseSensitive(j.get(), "owner")) {
            if (!cJSON_IsString(o) || !o->valuestring) return error_reply(400, "\"owner\" must be a string");
            if (std::string why = validate_owner(o->valuestring); !why.empty()) return error_reply(400, "\"owner\": " + why);
            owner = o->valuestring;
        }
        if (cJSON_GetObjectItemCaseSensitive(j.get(), "ttlSeconds")) {
            auto t = json::get_int(j.get(), "ttlSeconds");
            if (!t || *t < kMinTtl || *t > kMaxTtl)
                return error_reply(400, "\"ttlSeconds\" must be a whole number of seconds from " + std::to_string(kMinTtl) +
                                            " to " + std::to_string(kMaxTtl));
            ttl = static_cast<int>(*t);
        }
    }

    Result r;
    if (method == "POST") {
        r = service_.create(name, owner, ttl);
    } else {
        std::chrono::milliseconds wait{0};
        if (auto q = query_arg(conn, "wait")) {
            char *end = nullptr;
            double secs = q->empty() ? -1 : std::strtod(q->c_str(), &end);
            if (q->empty() || *end != '\0' || !std::isfinite(secs) || secs < 0)
                return error_reply(400, "query parameter wait must be a number of seconds >= 0 (at most " +
                                            std::to_string(LockService::kMaxWait.count()) + " are honoured)");
            secs = std::min(secs, static_cast<double>(LockService::kMaxWait.count()));
            wait = std::chrono::milliseconds(static_cast<int64_t>(secs * 1000.0));
        }
        r = service_.acquire(name, owner, ttl, wait, [conn] { return peer_closed(conn); });
        if (wait.count() > 0) {
            // A long-poll shows no socket activity for up to kMaxWait. libmicrohttpd
            // 0.9.75 does not count that against the idle timeout, but restart the
            // idle clock anyway so no version closes the connection unanswered.
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, kIdleTimeoutSeconds);
        }
    }
    switch (r.outcome) {
    case Outcome::Acquired: return lock_reply(200, r.view);
    case Outcome::ShuttingDown: return error_reply(503, "mp-sidecar is shutting down");
    default: return lock_reply(409, r.view);
    }
}

std::string HttpServer::metrics_text() {
    ServiceStats s = service_.stats();
    std::string out;
    auto metric = [&](const char *name, const char *type, const char *help, uint64_t value) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
               std::to_string(value) + "\n";
    };
    metric("mp_sidecar_locks_held", "gauge",
           "Locks acquired through this sidecar and still held (not released, renewed within their TTL).", s.locks_held);
    metric("mp_sidecar_waiters", "gauge", "Requests currently waiting (PUT ?wait=) for a lock.", s.waiters);
    metric("mp_sidecar_acquisitions_total", "counter", "Times a lock got a new holder through this sidecar.",
           s.acquisitions);
    metric("mp_sidecar_renewals_total", "counter", "Renewals by the current holder.", s.renewals);
    metric("mp_sidecar_releases_total", "counter", "Locks released by their holder.", s.releases);
    metric("mp_sidecar_takeovers_total", "counter",
           "Acquisitions of a lock whose previous holder let its TTL expire without releasing.", s.takeovers);
    metric("mp_sidecar_backend_errors_total", "counter", "Failed calls to the storage backend.", s.backend_errors);
    out += "# HELP mp_sidecar_requests_total HTTP requests answered, by method and status code.\n"
           "# TYPE mp_sidecar_requests_total counter\n";
    std::lock_guard<std::mutex> g(mu_);
    for (const auto &[key, n] : requests_)
        out += "mp_sidecar_requests_total{method=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
               std::to_string(n) + "\n";
    return out;
}

}  // namespace mp::sidecar
