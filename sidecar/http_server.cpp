#include "http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <array>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <future>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "common/names.h"
#include "json/json.h"
#include "log.h"

namespace mp::sidecar {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

const char *const kLockMethods = "GET, HEAD, PUT, POST, DELETE";
const char *const kReadMethods = "GET, HEAD";
constexpr size_t kDefaultListLimit = 1000;
constexpr size_t kMaxListLimit = 10000;

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
        if (i + extra >= s.size() && extra) return false;  // truncated sequence
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

std::string format_url(const sockaddr_storage &ss) {
    char host[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET6) {
        const auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        return "http://[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    const auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return "http://" + std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// RFC 3986 percent-decoding; nullopt for a malformed escape or a NUL byte.
std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') return std::nullopt;
        out += c;
    }
    return out;
}

bool only_whitespace(const std::string &s) {
    for (char c : s)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
    return true;
}

std::string method_label(const std::string &m) {
    static const char *const known[] = {"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"};
    for (const char *k : known)
        if (m == k) return m;
    return "OTHER";  // bounded label set, whatever clients send
}

// The answer to one request.
struct Reply {
    unsigned code = 200;
    std::string body;
    std::string content_type = "application/json";
    std::string allow;        // Allow header for 405
    int retry_after = -1;     // Retry-After seconds (503 Overloaded)
    std::vector<std::pair<std::string, std::string>> headers;  // others
    bool close = false;       // close the connection after it
};

Reply json_reply(unsigned code, const cJSON *j) {
    Reply r;
    r.code = code;
    r.body = json::print(j) + "\n";
    return r;
}

Reply error_reply(unsigned code, const std::string &reason, const std::string &message) {
    auto j = json::object();
    json::set_string(j.get(), "message", message);
    json::set_string(j.get(), "reason", reason);
    return json_reply(code, j.get());
}

Reply bad_request(const std::string &message) { return error_reply(400, "BadRequest", message); }

Reply text_reply(unsigned code, const std::string &text) {
    Reply r;
    r.code = code;
    r.body = text;
    r.content_type = "text/plain; charset=utf-8";
    return r;
}

Reply method_not_allowed(const std::string &method, const std::string &path, const char *allow) {
    Reply r = error_reply(405, "MethodNotAllowed",
                          "method " + printable(method) + " is not allowed on " + path + "; allowed: " + allow);
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
    if (!v.session.empty()) json::set_string(j.get(), "session", v.session);
    return j;
}

Reply lock_reply(unsigned code, const LockView &v) {
    auto j = lock_json(v);
    return json_reply(code, j.get());
}

Reply recovering_reply(const std::string &name) {
    auto j = json::object();
    json::set_string(j.get(), "name", name);
    json::set_string(j.get(), "owner", "");
    json::set_int(j.get(), "token", 0);
    json::set_bool(j.get(), "held", true);
    json::set_string(j.get(), "reason", "Recovering");
    json::set_string(j.get(), "message",
                     "mp-sidecar restarted after a crash and grants no lock until its grace period (the longest TTL "
                     "it had granted) is over, so that holders from before the restart learn of their loss first");
    return json_reply(409, j.get());
}

Reply shutting_down_reply() { return error_reply(503, "ShuttingDown", "mp-sidecar is shutting down"); }

// What a lock operation answered, as HTTP.
Reply outcome_reply(const Result &r) {
    switch (r.outcome) {
    case Outcome::Acquired: return lock_reply(200, r.view);
    case Outcome::ShuttingDown: return shutting_down_reply();
    case Outcome::Recovering: return recovering_reply(r.view.record.name);
    case Outcome::NotFound: return error_reply(404, "NotFound", "lock '" + r.view.record.name + "' does not exist");
    case Outcome::Released: return lock_reply(200, r.view);
    case Outcome::Conflict: break;
    }
    return lock_reply(409, r.view);
}

// A request as the router sees it.
struct Request {
    std::string method;
    std::string path;                            // percent-decoded
    std::map<std::string, std::string> query;    // percent-decoded
    std::string body;
    bool keep_alive = true;
};

// Splits and decodes a request target; "" or what is wrong.
std::string parse_target(std::string_view target, Request *out) {
    auto qpos = target.find('?');
    auto path = percent_decode(target.substr(0, qpos));
    if (!path) return "the request path has a malformed %-escape or a NUL byte";
    out->path = *path;
    if (qpos == std::string_view::npos) return "";
    std::string_view q = target.substr(qpos + 1);
    while (!q.empty()) {
        auto amp = q.find('&');
        std::string_view pair = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
        if (pair.empty()) continue;
        auto eq = pair.find('=');
        auto key = percent_decode(pair.substr(0, eq));
        auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!key || !value) return "the query string has a malformed %-escape or a NUL byte";
        out->query[*key] = *value;
    }
    return "";
}

}  // namespace

std::string printable(const std::string &s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

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

// ---------------------------------------------------------------------------

class Connection;

struct HttpServer::Impl {
    Impl(LockService &s, Backend &b, ServerOptions o) : service(s), backend(b), opts(std::move(o)) {}

    LockService &service;
    Backend &backend;
    ServerOptions opts;
    net::io_context ioc{1};
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
    tcp::acceptor acceptor{ioc};
    std::thread loop;
    std::unique_ptr<net::thread_pool> workers;  // only for a blocking backend
    std::string url;
    size_t max_connections = 0;

    // Event-loop thread only.
    std::set<std::shared_ptr<Connection>> connections;
    std::map<std::string, size_t> per_address;
    std::map<std::string, std::weak_ptr<Connection>> sessions;
    bool accepting = true;
    // Set by stop(): sessions closed from now on are cut by us, not
    // acknowledged by their clients, so their holds stay (TTL rules).
    bool stopping = false;

    // Any thread.
    std::mutex mu;
    std::condition_variable sessions_cv;
    size_t open_sessions = 0;
    std::map<std::pair<std::string, unsigned>, uint64_t> requests;  // (method, code) -> count
    uint64_t refused_overloaded = 0;
    uint64_t timed_out = 0;

    void do_accept();
    void count(const std::string &method, unsigned code) {
        std::lock_guard<std::mutex> g(mu);
        ++requests[{method_label(method), code}];
    }
    // Run `fn` where lock operations belong: inline for a backend that never
    // blocks, on a worker otherwise.
    template <typename Fn>
    void run_op(Fn &&fn) {
        if (workers)
            net::post(*workers, std::forward<Fn>(fn));
        else
            fn();
    }
    void session_event(const std::string &session, const std::string &json);
    void session_closed(const std::string &id);
    std::string metrics_text();
};

// One client connection: reads requests one at a time (keep-alive), answers
// them in order, parks long-polls, or becomes a session stream.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(HttpServer::Impl &srv, tcp::socket sock, std::string address)
        : srv_(srv), sock_(std::move(sock)), timer_(srv.ioc), ping_(srv.ioc), address_(std::move(address)) {}

    void start() { read_request(); }
    void close();
    void send_event(const std::string &json);  // session streams only
    const std::string &address() const { return address_; }

private:
    void read_request();
    void on_read(beast::error_code ec);
    void route(Request req);
    void lock_request(Request req, const std::string &name);
    void on_parked(uint64_t id);
    void finish_put(const Result &r);
    void give_back(const Result &r);
    void watch_hangup();
    void watch_session();
    void start_session(const Request &req);
    void ping();
    void write_next_event();
    void respond(const std::string &method, Reply reply);
    void linger_close();
    void drain(std::shared_ptr<std::array<char, 4096>> scratch);
    Reply read_only(const Request &req);

    HttpServer::Impl &srv_;
    tcp::socket sock_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
    net::steady_timer timer_;
    net::steady_timer ping_;
    std::string address_;
    bool closed_ = false;
    bool keep_alive_ = true;
    uint64_t timer_gen_ = 0;  // which deadline timer_ currently stands for
    std::string method_;
    // A PUT in progress, and a parked long-poll.
    bool pending_put_ = false;
    bool waited_ = false;
    uint64_t waiter_ = 0;
    bool parked_ = false;
    std::function<void()> on_write_failed_;
    std::string parked_name_, parked_owner_;
    // A session stream.
    std::string session_;
    std::deque<std::shared_ptr<std::string>> events_;
    bool writing_ = false;
    std::shared_ptr<http::response<http::empty_body>> stream_head_;
};

void Connection::close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    timer_.cancel();
    ping_.cancel();
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    if (parked_) {
        // The client gave up its long-poll: drop its place in the queue.
        parked_ = false;
        srv_.service.abandon(waiter_);
    }
    if (!session_.empty()) srv_.session_closed(session_);
    auto self = shared_from_this();
    if (--srv_.per_address[address_] == 0) srv_.per_address.erase(address_);
    srv_.connections.erase(self);
}

// Close after an answer the client may still be sending a request body to
// (413, 400): shut our side, drop what arrives for up to a second, then
// close, so the client reads the answer instead of a connection reset.
void Connection::linger_close() {
    if (closed_) return;
    beast::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_send, ec);
    auto self = shared_from_this();
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([this, self, gen = ++timer_gen_](beast::error_code e) {
        if (!e && gen == timer_gen_) close();
    });
    drain(std::make_shared<std::array<char, 4096>>());
}

void Connection::drain(std::shared_ptr<std::array<char, 4096>> scratch) {
    auto self = shared_from_this();
    sock_.async_read_some(net::buffer(*scratch), [this, self, scratch](beast::error_code e, size_t) {
        if (e || closed_) return close();
        drain(scratch);
    });
}

void Connection::read_request() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(HttpServer::kMaxHeader);
    parser_->body_limit(HttpServer::kMaxBody);
    auto self = shared_from_this();
    auto read = [this, self] {
        // From the first byte, head and body must arrive within request_timeout:
        // a client trickling bytes cannot hold a connection open forever.
        timer_.expires_after(srv_.opts.request_timeout);
        timer_.async_wait([this, self, gen = ++timer_gen_](beast::error_code ec) {
            if (ec || closed_ || gen != timer_gen_) return;
            std::lock_guard<std::mutex> g(srv_.mu);
            ++srv_.timed_out;
            sock_.cancel();
        });
        http::async_read(sock_, buf_, *parser_, [this, self](beast::error_code ec, size_t) { on_read(ec); });
    };
    if (buf_.size() > 0) {
        read();
        return;
    }
    // Between requests a keep-alive connection may idle, for idle_timeout.
    timer_.expires_after(srv_.opts.idle_timeout);
    timer_.async_wait([this, self, gen = ++timer_gen_](beast::error_code ec) {
        if (!ec && !closed_ && gen == timer_gen_) close();
    });
    sock_.async_wait(tcp::socket::wait_read, [this, self, read](beast::error_code ec) {
        if (closed_) return;
        if (ec) return close();
        ++timer_gen_;
        timer_.cancel();
        read();
    });
}

void Connection::on_read(beast::error_code ec) {
    ++timer_gen_;  // a deadline that fired just now no longer applies
    timer_.cancel();
    if (closed_) return;
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset) return close();
    if (ec == net::error::operation_aborted) {
        // The request deadline passed: say so if anything of a request came.
        Reply r = error_reply(408, "RequestTimeout",
                              "the request was not received within " +
                                  std::to_string(srv_.opts.request_timeout.count()) + " ms");
        r.close = true;
        return respond("", r);
    }
    if (ec) {
        Reply r;
        if (ec == http::error::body_limit)
            r = error_reply(413, "TooLarge", "request body is larger than " + std::to_string(HttpServer::kMaxBody) + " bytes");
        else if (ec == http::error::header_limit)
            r = error_reply(431, "HeadersTooLarge",
                            "request head is larger than " + std::to_string(HttpServer::kMaxHeader) + " bytes");
        else
            r = bad_request("malformed HTTP request: " + ec.message());
        r.close = true;
        log::debug("http: " + address_ + ": " + ec.message());
        return respond("", r);
    }
    auto msg = parser_->release();
    Request req;
    req.method = std::string(msg.method_string());
    req.keep_alive = msg.keep_alive();
    req.body = std::move(msg.body());
    keep_alive_ = req.keep_alive;
    method_ = req.method;
    if (std::string why = parse_target(msg.target(), &req); !why.empty()) return respond(req.method, bad_request(why));
    try {
        route(std::move(req));
    } catch (const std::exception &e) {
        // A bug must cost this request, not leave its connection unanswered forever.
        log::error(std::string("internal error: ") + e.what());
        Reply r = error_reply(500, "Internal", std::string("internal error in mp-sidecar: ") + e.what());
        r.close = true;
        pending_put_ = false;
        respond(method_, r);
    }
}

void Connection::respond(const std::string &method, Reply reply) {
    if (closed_) return;
    srv_.count(method, reply.code);
    if (log::enabled(log::Level::Debug))
        log::debug(printable(method) + " -> " + std::to_string(reply.code) + " (" + address_ + ")");
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(reply.code), 11);
    res->set(http::field::content_type, reply.content_type);
    res->set(http::field::cache_control, "no-store");
    if (!reply.allow.empty()) res->set(http::field::allow, reply.allow);
    if (reply.retry_after >= 0) res->set(http::field::retry_after, std::to_string(reply.retry_after));
    for (const auto &[k, v] : reply.headers) res->set(k, v);
    const bool keep = keep_alive_ && !reply.close;
    res->keep_alive(keep);
    const size_t size = reply.body.size();
    if (method != "HEAD") res->body() = std::move(reply.body);
    res->content_length(size);
    auto self = shared_from_this();
    auto failed = std::move(on_write_failed_);
    on_write_failed_ = nullptr;
    http::async_write(sock_, *res, [this, self, res, keep, failed](beast::error_code ec, size_t) {
        if (ec && failed) failed();
        if (ec) return close();
        if (!keep) return linger_close();
        read_request();
    });
}

Reply Connection::read_only(const Request &req) {
    const bool read = req.method == "GET" || req.method == "HEAD";
    if (!read) return method_not_allowed(req.method, req.path, kReadMethods);
    if (req.path == "/healthz") return text_reply(200, "ok\n");
    if (req.path == "/readyz") {
        if (srv_.service.shutting_down()) return shutting_down_reply();
        std::string why;
        bool ok = false;
        try {
            ok = srv_.backend.ready(&why);
        } catch (const std::exception &e) {
            why = e.what();
        }
        if (!ok)
            return error_reply(503, "BackendFailure",
                               "lock backend not ready: " + (why.empty() ? std::string("unknown reason") : why));
        return text_reply(200, "ok\n");
    }
    Reply r = text_reply(200, srv_.metrics_text());  // /metrics
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
}

void Connection::route(Request req) {
    const std::string &path = req.path;
    if (path == "/healthz" || path == "/readyz" || path == "/metrics") {
        return respond(req.method, read_only(req));
    }
    if (path == "/session") {
        if (req.method != "GET") return respond(req.method, method_not_allowed(req.method, path, "GET"));
        return start_session(req);
    }
    if (path == "/locks") {
        if (req.method != "GET" && req.method != "HEAD")
            return respond(req.method, method_not_allowed(req.method, path, kReadMethods));
        size_t limit = kDefaultListLimit;
        const bool paged = req.query.count("limit") || req.query.count("continue");
        if (auto it = req.query.find("limit"); it != req.query.end()) {
            char *end = nullptr;
            unsigned long n = std::strtoul(it->second.c_str(), &end, 10);
            if (it->second.empty() || *end || n == 0 || n > kMaxListLimit)
                return respond(req.method, bad_request("query parameter limit must be a whole number from 1 to " +
                                                       std::to_string(kMaxListLimit)));
            limit = n;
        }
        std::string after = req.query.count("continue") ? req.query["continue"] : std::string();
        auto self = shared_from_this();
        srv_.run_op([this, self, req = std::move(req), limit, after, paged] {
            Reply r;
            try {
                bool more = false;
                auto views = srv_.service.list(after, limit, &more);
                auto arr = json::array();
                for (const auto &v : views) cJSON_AddItemToArray(arr.get(), lock_json(v).release());
                std::string next = more && !views.empty() ? views.back().record.name : std::string();
                if (paged) {
                    auto obj = json::object();
                    json::set(obj.get(), "items", std::move(arr));
                    json::set_string(obj.get(), "continue", next);
                    r = json_reply(200, obj.get());
                } else {
                    r = json_reply(200, arr.get());
                }
                // The unpaged form keeps the original's bare array; it says
                // where to go on in a header.
                if (!paged && more) r.headers.emplace_back("Metaparticle-Continue", next);
            } catch (const BackendError &e) {
                r = error_reply(503, "BackendFailure", std::string("lock backend failure: ") + e.what());
            }
            net::post(srv_.ioc, [this, self, method = req.method, r = std::move(r)]() mutable {
                respond(method, std::move(r));
            });
        });
        return;
    }
    static const std::string prefix = "/locks/";
    if (path.compare(0, prefix.size(), prefix) == 0) {
        std::string name = path.substr(prefix.size());  // before req is moved from: `path` is a part of it
        return lock_request(std::move(req), name);
    }
    respond(req.method, error_reply(404, "NotFound",
                                    "no such path: " + printable(path) +
                                        " (the API is under /locks; see also /session, /healthz, /readyz, /metrics)"));
}

void Connection::lock_request(Request req, const std::string &name) {
    const std::string &method = req.method;
    const bool is_get = method == "GET" || method == "HEAD";
    if (!is_get && method != "PUT" && method != "POST" && method != "DELETE")
        return respond(method, method_not_allowed(method, "/locks/{name}", kLockMethods));
    if (std::string why = validate_lock_name(name); !why.empty()) return respond(method, bad_request(printable(why)));

    auto self = shared_from_this();
    auto answer = [this, self, method](Reply r) {
        net::post(srv_.ioc, [this, self, method, r = std::move(r)]() mutable { respond(method, std::move(r)); });
    };
    auto guarded = [answer](auto fn) {
        return [answer, fn]() mutable {
            try {
                answer(fn());
            } catch (const LimitError &e) {
                answer(error_reply(503, "TooManyLocks", e.what()));
            } catch (const BackendError &e) {
                log::warn(std::string("backend failure: ") + e.what());
                answer(error_reply(503, "BackendFailure", std::string("lock backend failure: ") + e.what()));
            } catch (const std::exception &e) {
                log::error(std::string("internal error: ") + e.what());
                answer(error_reply(500, "Internal", std::string("internal error in mp-sidecar: ") + e.what()));
            }
        };
    };

    if (is_get) {
        return srv_.run_op(guarded([this, name] {
            LockView v;
            if (!srv_.service.get(name, &v)) return error_reply(404, "NotFound", "lock '" + name + "' does not exist");
            return lock_reply(200, v);
        }));
    }

    if (method == "DELETE") {
        std::string owner = srv_.opts.identity;
        if (auto q = req.query.find("owner"); q != req.query.end()) {
            if (std::string why = validate_owner(q->second); !why.empty())
                return respond(method, bad_request("query parameter " + why));
            owner = q->second;
        }
        std::optional<uint64_t> token;
        if (auto q = req.query.find("token"); q != req.query.end()) {
            char *end = nullptr;
            errno = 0;
            unsigned long long t = std::strtoull(q->second.c_str(), &end, 10);
            if (q->second.empty() || *end || errno || t == 0 || q->second[0] == '-')
                return respond(method, bad_request("query parameter token must be a fencing token (a whole number >= 1)"));
            token = t;
        }
        return srv_.run_op(guarded([this, name, owner, token] {
            Result r = srv_.service.release(name, owner, token);
            if (r.outcome == Outcome::NotFound) r.view.record.name = name;
            return outcome_reply(r);
        }));
    }

    // PUT and POST: who, for how long, and in which session.
    std::string owner = srv_.opts.identity;
    std::string session;
    int ttl = srv_.opts.default_ttl_seconds;
    if (only_whitespace(req.body)) {
        ttl = srv_.opts.legacy_ttl_seconds;  // the original clients: empty body, 30 s TTL
    } else {
        json::Ptr j = json::parse_exact(req.body);
        if (!j)
            return respond(method, bad_request("request body is not one valid JSON value (no trailing data, no NUL "
                                               "characters in strings)"));
        if (!cJSON_IsObject(j.get()))
            return respond(method, bad_request("request body must be a JSON object like {\"owner\": \"me\", "
                                               "\"ttlSeconds\": 15}"));
        if (const cJSON *o = cJSON_GetObjectItemCaseSensitive(j.get(), "owner")) {
            if (!cJSON_IsString(o) || !o->valuestring) return respond(method, bad_request("\"owner\" must be a string"));
            if (std::string why = validate_owner(o->valuestring); !why.empty())
                return respond(method, bad_request("\"owner\": " + why));
            owner = o->valuestring;
        }
        if (cJSON_GetObjectItemCaseSensitive(j.get(), "ttlSeconds")) {
            auto t = json::get_int(j.get(), "ttlSeconds");
            if (!t || *t < HttpServer::kMinTtl || *t > HttpServer::kMaxTtl)
                return respond(method, bad_request("\"ttlSeconds\" must be a whole number of seconds from " +
                                                   std::to_string(HttpServer::kMinTtl) + " to " +
                                                   std::to_string(HttpServer::kMaxTtl)));
            ttl = static_cast<int>(*t);
        }
        if (const cJSON *s = cJSON_GetObjectItemCaseSensitive(j.get(), "session")) {
            if (!cJSON_IsString(s) || !s->valuestring || std::strlen(s->valuestring) > 64)
                return respond(method, bad_request("\"session\" must be a session id from GET /session"));
            session = s->valuestring;
        }
    }

    if (method == "POST") {
        return srv_.run_op(guarded([this, name, owner, ttl] { return outcome_reply(srv_.service.create(name, owner, ttl)); }));
    }

    std::chrono::milliseconds wait{0};
    if (auto q = req.query.find("wait"); q != req.query.end()) {
        char *end = nullptr;
        double secs = q->second.empty() ? -1 : std::strtod(q->second.c_str(), &end);
        if (q->second.empty() || *end != '\0' || !std::isfinite(secs) || secs < 0)
            return respond(method, bad_request("query parameter wait must be a number of seconds >= 0 (at most " +
                                               std::to_string(LockService::kMaxWait.count()) + " are honoured)"));
        secs = std::min(secs, static_cast<double>(LockService::kMaxWait.count()));
        wait = std::chrono::milliseconds(static_cast<int64_t>(secs * 1000.0));
    }
    AcquireRequest a{name, owner, ttl, session, wait};
    pending_put_ = true;
    parked_name_ = name;
    parked_owner_ = owner;
    waited_ = wait.count() > 0;
    srv_.run_op([this, self, a, answer] {
        auto done = [this, self](const Result &r) {
            net::post(srv_.ioc, [this, self, r] { finish_put(r); });
        };
        try {
            uint64_t id = srv_.service.acquire(a, done);
            if (id) net::post(srv_.ioc, [this, self, id] { on_parked(id); });
        } catch (const LimitError &e) {
            net::post(srv_.ioc, [this, self, e = std::string(e.what())] {
                if (pending_put_) pending_put_ = false, respond("PUT", error_reply(503, "TooManyLocks", e));
            });
        } catch (const std::exception &e) {
            log::warn(std::string("backend failure: ") + e.what());
            net::post(srv_.ioc, [this, self, e = std::string(e.what())] {
                if (pending_put_)
                    pending_put_ = false,
                    respond("PUT", error_reply(503, "BackendFailure", "lock backend failure: " + e));
            });
        }
    });
}

void Connection::on_parked(uint64_t id) {
    if (!pending_put_) return;  // answered already
    waiter_ = id;
    parked_ = true;
    if (closed_) {
        parked_ = false;
        srv_.service.abandon(id);
        return;
    }
    watch_hangup();
}

// A parked client that hangs up closes its socket: the socket turns readable
// and reading it gives end-of-stream. Bytes it sends meanwhile (a pipelined
// request) are kept in the read buffer for after the answer, so the watch
// goes on; past a request's worth of them the client is misbehaving and only
// the answer's write can tell (a grant that cannot be delivered is given back).
void Connection::watch_hangup() {
    auto self = shared_from_this();
    sock_.async_wait(tcp::socket::wait_read, [this, self](beast::error_code ec) {
        if (ec || closed_ || !parked_) return;
        constexpr size_t kChunk = 4096;
        if (buf_.size() + kChunk > HttpServer::kMaxHeader + HttpServer::kMaxBody) return;
        auto space = buf_.prepare(kChunk);
        ssize_t n = ::recv(sock_.native_handle(), space.data(), space.size(), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return close();
        if (n > 0) buf_.commit(static_cast<size_t>(n));
        watch_hangup();
    });
}

void Connection::give_back(const Result &r) {
    if (r.outcome != Outcome::Acquired || !waited_) return;
    LockService &svc = srv_.service;
    const std::string name = parked_name_, owner = parked_owner_;
    const uint64_t token = r.view.record.token;
    log::debug("lock '" + name + "': '" + printable(owner) + "' hung up as it was granted the lock (token " +
               std::to_string(token) + "); releasing it");
    srv_.run_op([&svc, name, owner, token] {
        try {
            svc.release(name, owner, token);
        } catch (const std::exception &e) {
            log::warn("lock '" + name + "': could not release the hold of a client that hung up: " + e.what());
        }
    });
}

void Connection::finish_put(const Result &r) {
    if (!pending_put_) return;
    pending_put_ = false;
    if (parked_) {
        parked_ = false;
        beast::error_code ec;
        sock_.cancel(ec);  // ends watch_hangup()
    }
    if (closed_) return give_back(r);
    if (r.outcome == Outcome::Acquired && waited_) {
        auto self = shared_from_this();
        on_write_failed_ = [this, self, r] { give_back(r); };
    }
    respond("PUT", outcome_reply(r));
}

void Connection::start_session(const Request &) {
    session_ = srv_.service.open_session();
    srv_.sessions[session_] = weak_from_this();
    {
        std::lock_guard<std::mutex> g(srv_.mu);
        ++srv_.open_sessions;
    }
    srv_.count("GET", 200);
    keep_alive_ = false;
    auto head = std::make_shared<http::response<http::empty_body>>(http::status::ok, 11);
    head->set(http::field::content_type, "application/x-ndjson");
    head->set(http::field::cache_control, "no-store");
    head->chunked(true);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*head);
    auto hello = json::object();
    json::set_string(hello.get(), "type", "hello");
    json::set_string(hello.get(), "session", session_);
    json::set_string(hello.get(), "instance", srv_.opts.instance);
    json::set_bool(hello.get(), "durable", srv_.opts.durable);
    json::set_int(hello.get(), "heartbeatMs", srv_.opts.heartbeat.count());
    events_.push_back(std::make_shared<std::string>(json::print(hello.get()) + "\n"));
    writing_ = true;  // events queue until the head is out
    auto self = shared_from_this();
    http::async_write_header(sock_, *sr, [this, self, head, sr](beast::error_code ec, size_t) {
        if (ec) return close();
        write_next_event();
        ping();
        watch_session();
    });
    log::debug("session " + session_ + " opened (" + address_ + ")");
}

// The stream carries nothing from the client; anything it sends is dropped.
// End of stream (or an error) is the client closing its session.
void Connection::watch_session() {
    auto self = shared_from_this();
    sock_.async_wait(tcp::socket::wait_read, [this, self](beast::error_code ec) {
        if (closed_) return;
        if (ec) return close();
        char scratch[512];
        ssize_t n = ::recv(sock_.native_handle(), scratch, sizeof scratch, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return close();
        watch_session();
    });
}

void Connection::ping() {
    auto self = shared_from_this();
    ping_.expires_after(srv_.opts.heartbeat);
    ping_.async_wait([this, self](beast::error_code ec) {
        if (ec || closed_) return;
        send_event("{\"type\":\"ping\"}");
        ping();
    });
}

void Connection::send_event(const std::string &json) {
    if (closed_ || session_.empty()) return;
    events_.push_back(std::make_shared<std::string>(json + "\n"));
    if (!writing_) write_next_event();
}

void Connection::write_next_event() {
    if (closed_) return;
    if (events_.empty()) {
        writing_ = false;
        return;
    }
    writing_ = true;
    auto ev = events_.front();
    auto self = shared_from_this();
    net::async_write(sock_, http::make_chunk(net::buffer(*ev)), [this, self, ev](beast::error_code ec, size_t) {
        if (ec) return close();
        events_.pop_front();
        write_next_event();
    });
}

// ---------------------------------------------------------------------------

// Past a connection cap: a clear 503 instead of a silent close. The request
// is not read; the answer goes out at once and the socket closes after the
// client has read it (or in a second).
void refuse(HttpServer::Impl &srv, tcp::socket sock, const std::string &why) {
    {
        std::lock_guard<std::mutex> g(srv.mu);
        ++srv.refused_overloaded;
    }
    Reply r = error_reply(503, "Overloaded", why + "; retry in a second");
    auto text = std::make_shared<std::string>(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
        "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
        std::to_string(r.body.size()) + "\r\n\r\n" + r.body);
    auto s = std::make_shared<tcp::socket>(std::move(sock));
    auto timer = std::make_shared<net::steady_timer>(srv.ioc, std::chrono::seconds(1));
    net::async_write(*s, net::buffer(*text), [s, text, timer](beast::error_code ec, size_t) {
        beast::error_code ignored;
        if (ec) return s->close(ignored);
        s->shutdown(tcp::socket::shutdown_send, ignored);
        timer->async_wait([s](beast::error_code) {
            beast::error_code ignored2;
            s->close(ignored2);
        });
        auto drain = std::make_shared<std::array<char, 1024>>();
        s->async_read_some(net::buffer(*drain), [s, drain, timer](beast::error_code, size_t) {
            beast::error_code ignored2;
            timer->cancel();
            s->close(ignored2);
        });
    });
}

void HttpServer::Impl::do_accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket sock) {
        if (!accepting) return;
        if (ec) {
            if (ec == net::error::operation_aborted) return;
            log::warn("accept: " + ec.message());
            // Out of descriptors: wait a little instead of spinning.
            auto t = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(100));
            t->async_wait([this, t](beast::error_code) { do_accept(); });
            return;
        }
        beast::error_code ignored;
        sock.set_option(tcp::no_delay(true), ignored);
        auto remote = sock.remote_endpoint(ignored);
        std::string address = ignored ? std::string("?") : remote.address().to_string();
        if (connections.size() >= max_connections) {
            refuse(*this, std::move(sock), "mp-sidecar is serving " + std::to_string(connections.size()) +
                                               " connections, its limit");
        } else if (per_address[address] >= opts.max_connections_per_address) {
            refuse(*this, std::move(sock), "mp-sidecar is serving " + std::to_string(per_address[address]) +
                                               " connections from " + address + ", its limit per address");
        } else {
            auto c = std::make_shared<Connection>(*this, std::move(sock), address);
            connections.insert(c);
            ++per_address[address];
            c->start();
        }
        do_accept();
    });
}

void HttpServer::Impl::session_event(const std::string &session, const std::string &json) {
    net::post(ioc, [this, session, json] {
        auto it = sessions.find(session);
        if (it == sessions.end()) return;
        if (auto c = it->second.lock()) c->send_event(json);
    });
}

void HttpServer::Impl::session_closed(const std::string &id) {
    sessions.erase(id);
    log::debug("session " + id + " closed");
    if (stopping) {
        std::lock_guard<std::mutex> g(mu);
        --open_sessions;
        return;
    }
    run_op([this, id] {
        try {
            service.close_session(id);
        } catch (const std::exception &e) {
            log::warn("session " + id + ": " + e.what());
        }
        {
            std::lock_guard<std::mutex> g(mu);
            --open_sessions;
        }
        sessions_cv.notify_all();
    });
}

std::string HttpServer::Impl::metrics_text() {
    ServiceStats s = service.stats();
    std::string out;
    auto metric = [&](const char *name, const char *type, const char *help, uint64_t value) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
               std::to_string(value) + "\n";
    };
    metric("mp_sidecar_locks_held", "gauge",
           "Locks acquired through this sidecar and still held (not released, renewed within their TTL).", s.locks_held);
    metric("mp_sidecar_waiters", "gauge", "Requests currently waiting (PUT ?wait=) for a lock.", s.waiters);
    metric("mp_sidecar_sessions", "gauge", "Open client sessions (GET /session streams).", s.sessions);
    metric("mp_sidecar_connections", "gauge", "Open client connections.", connections.size());
    metric("mp_sidecar_acquisitions_total", "counter", "Times a lock got a new holder through this sidecar.",
           s.acquisitions);
    metric("mp_sidecar_renewals_total", "counter", "Renewals by the current holder.", s.renewals);
    metric("mp_sidecar_releases_total", "counter", "Locks released by their holder.", s.releases);
    metric("mp_sidecar_handovers_total", "counter", "Releases that handed the lock straight to the next waiter.",
           s.handovers);
    metric("mp_sidecar_session_releases_total", "counter", "Holds released because their session closed.",
           s.session_releases);
    metric("mp_sidecar_takeovers_total", "counter",
           "Acquisitions of a lock whose previous holder let its TTL expire without releasing.", s.takeovers);
    metric("mp_sidecar_backend_errors_total", "counter", "Failed calls to the storage backend.", s.backend_errors);
    std::lock_guard<std::mutex> g(mu);
    metric("mp_sidecar_connections_refused_total", "counter",
           "Connections answered 503 Overloaded because a connection limit was reached.", refused_overloaded);
    metric("mp_sidecar_request_timeouts_total", "counter",
           "Connections closed because a request's head and body did not arrive in time.", timed_out);
    out += "# HELP mp_sidecar_requests_total HTTP requests answered, by method and status code.\n"
           "# TYPE mp_sidecar_requests_total counter\n";
    for (const auto &[key, n] : requests)
        out += "mp_sidecar_requests_total{method=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
               std::to_string(n) + "\n";
    return out;
}

// ---------------------------------------------------------------------------

HttpServer::HttpServer(LockService &service, Backend &backend, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, backend, std::move(options))) {
    Impl *impl = impl_.get();
    service.set_session_sink(
        [impl](const std::string &session, const std::string &json) { impl->session_event(session, json); });
}

HttpServer::~HttpServer() { stop(); }

std::string HttpServer::url() const { return impl_->url; }

std::string HttpServer::metrics_text() { return impl_->metrics_text(); }

void HttpServer::start() {
    Impl &s = *impl_;
    // Every connection is a descriptor: take what the hard limit allows.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    const size_t fd_room = rl.rlim_cur > 64 ? static_cast<size_t>(rl.rlim_cur) - 64 : 16;
    s.max_connections = std::min(s.opts.max_connections, fd_room);

    tcp::endpoint ep;
    std::memcpy(ep.data(), &s.opts.listen.addr, s.opts.listen.len);
    ep.resize(s.opts.listen.len);
    const std::string where = format_url(s.opts.listen.addr).substr(7);
    try {
        s.acceptor.open(ep.protocol());
        s.acceptor.set_option(tcp::acceptor::reuse_address(true));
        s.acceptor.bind(ep);
        s.acceptor.listen(1024);
    } catch (const boost::system::system_error &e) {
        throw std::runtime_error("cannot listen on " + where + ": " + e.code().message());
    }
    ::fcntl(s.acceptor.native_handle(), F_SETFD, FD_CLOEXEC);
    sockaddr_storage bound{};
    std::memcpy(&bound, s.acceptor.local_endpoint().data(), s.acceptor.local_endpoint().size());
    s.url = format_url(bound);

    if (s.backend.blocking()) s.workers = std::make_unique<net::thread_pool>(std::max(1, s.opts.worker_threads));
    s.work.emplace(net::make_work_guard(s.ioc));
    s.do_accept();
    s.loop = std::thread([&s] {
        for (;;) {
            try {
                s.ioc.run();
                return;
            } catch (const std::exception &e) {
                log::error(std::string("http: ") + e.what());
            }
        }
    });
}

namespace {
// Run `fn` on the event loop and wait for it.
template <typename Fn>
void on_loop(HttpServer::Impl &s, Fn fn) {
    if (!s.loop.joinable()) return;
    std::promise<void> done;
    net::post(s.ioc, [&] {
        fn();
        done.set_value();
    });
    done.get_future().wait();
}
}  // namespace

void HttpServer::stop_accepting() {
    on_loop(*impl_, [this] {
        impl_->accepting = false;
        beast::error_code ec;
        impl_->acceptor.close(ec);
    });
}

size_t HttpServer::shutdown_sessions(std::chrono::milliseconds timeout) {
    Impl &s = *impl_;
    on_loop(s, [&s] {
        auto ev = json::object();
        json::set_string(ev.get(), "type", "shutdown");
        json::set_string(ev.get(), "message",
                         "mp-sidecar is shutting down: every lock held through this session is lost; close the "
                         "session to acknowledge");
        const std::string text = json::print(ev.get());
        for (auto &[id, weak] : s.sessions)
            if (auto c = weak.lock()) c->send_event(text);
    });
    std::unique_lock<std::mutex> lk(s.mu);
    s.sessions_cv.wait_for(lk, timeout, [&] { return s.open_sessions == 0; });
    return s.open_sessions;
}

void HttpServer::stop() {
    Impl &s = *impl_;
    if (!s.loop.joinable()) return;
    on_loop(s, [&s] {
        s.accepting = false;
        s.stopping = true;
        beast::error_code ec;
        s.acceptor.close(ec);
        auto all = s.connections;
        for (auto &c : all) c->close();
    });
    // Session closes above may have queued releases on the workers: let them finish.
    if (s.workers) s.workers->join();
    s.work.reset();
    s.ioc.stop();
    s.loop.join();
}

}  // namespace mp::sidecar
