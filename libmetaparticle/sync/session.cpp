#include "sync/session.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>
#include <vector>

#include "http/client.h"
#include "json/json.h"

namespace mp::sync {
namespace {

constexpr size_t kMaxLineBytes = 64 * 1024;  // longer lines are skipped, never a reason to close
constexpr Millis kFirstBackoff{50};
constexpr Millis kMaxBackoff{2000};
constexpr Millis kUnsupportedRetry{30000};  // a sidecar without /session: look again later
constexpr Millis kAckWait{1500};            // for on_lost callbacks before acknowledging a shutdown

}  // namespace

void Done::set() {
    std::lock_guard<std::mutex> g(mu);
    done = true;
    cv.notify_all();
}

bool Done::wait_until(MonoTime deadline) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_until(lk, deadline, [&] { return done; });
}

std::shared_ptr<Session> Session::for_url(const std::string &base_url) {
    // Leaked on purpose: the session threads run until the process exits,
    // and nothing may tear the streams down during static destruction.
    static std::mutex *mu = new std::mutex;
    static auto *sessions = new std::map<std::string, std::shared_ptr<Session>>;
    static pid_t owner_pid = getpid();
    std::lock_guard<std::mutex> g(*mu);
    if (owner_pid != getpid()) {
        // A forked child has none of the parent's threads or streams.
        sessions = new std::map<std::string, std::shared_ptr<Session>>;
        owner_pid = getpid();
    }
    auto &s = (*sessions)[base_url];
    if (!s) {
        s = std::make_shared<Session>(base_url);
        std::thread([s] { s->run(); }).detach();
    }
    return s;
}

Session::Session(std::string base_url) : base_url_(std::move(base_url)) {}

void Session::add(SessionListener *l) {
    std::lock_guard<std::mutex> g(reg_mu_);
    listeners_.insert(l);
}

void Session::remove(SessionListener *l) {
    std::lock_guard<std::mutex> d(dispatch_mu_);
    std::lock_guard<std::mutex> g(reg_mu_);
    listeners_.erase(l);
}

SessionInfo Session::current(Millis max_wait) {
    std::unique_lock<std::mutex> lk(mu_);
    if (max_wait.count() > 0) cv_.wait_for(lk, max_wait, [&] { return settled_; });
    return info_;
}

bool Session::closed(const std::string &id) {
    std::lock_guard<std::mutex> g(mu_);
    return closed_sessions_.count(id) > 0;
}

void Session::dispatch(const SessionEvent &e) {
    std::vector<std::shared_ptr<Done>> waits;
    {
        std::lock_guard<std::mutex> d(dispatch_mu_);
        std::vector<SessionListener *> targets;
        {
            std::lock_guard<std::mutex> g(reg_mu_);
            targets.assign(listeners_.begin(), listeners_.end());
        }
        // dispatch_mu_ keeps every target registered (alive) meanwhile.
        for (SessionListener *l : targets)
            if (auto w = l->on_session_event(e)) waits.push_back(std::move(w));
    }
    MonoTime deadline = MonoClock::now() + kAckWait;
    for (auto &w : waits) w->wait_until(deadline);
}

bool Session::handle_line(const std::string &line, bool &hello_seen, bool &unsupported) {
    auto j = json::parse(line);
    std::string type = json::get_string(j.get(), "type").value_or("");
    if (!hello_seen) {
        auto id = json::get_string(j.get(), "session");
        if (type != "hello" || !id || id->empty()) {
            // Not a session stream (an older sidecar's 404 body, say): no
            // hold can be tied to it, so closing it is safe.
            unsupported = true;
            return false;
        }
        hello_seen = true;
        std::string instance = json::get_string(j.get(), "instance").value_or("");
        bool durable = json::get_bool(j.get(), "durable").value_or(false);
        std::string old_instance, broken;
        bool old_durable;
        {
            std::lock_guard<std::mutex> g(mu_);
            old_instance = last_instance_;
            old_durable = last_durable_;
            broken.swap(broken_session_);
            info_ = {*id, instance};
            last_instance_ = instance;
            last_durable_ = durable;
            settled_ = true;
            cv_.notify_all();
        }
        // Holds are matched by the session or instance that confirmed them,
        // so holds made through the new session are not touched.
        if (!broken.empty() && old_instance == instance) {
            SessionEvent e{SessionEvent::SessionClosed,
                           "the session stream to mp-sidecar at " + base_url_ +
                               " broke, so the sidecar released the holds tied to it",
                           broken, "", "", "", 0};
            dispatch(e);
        }
        if (!old_instance.empty() && old_instance != instance && !old_durable) {
            SessionEvent e{SessionEvent::InstanceGone, "mp-sidecar restarted (instance " + old_instance + " -> " +
                                                           instance + ") and its memory lock table is gone",
                           "", old_instance, "", "", 0};
            dispatch(e);
        }
        return true;
    }
    if (type == "lost") {
        auto token = json::get_int(j.get(), "token");
        SessionEvent e{SessionEvent::Lost, "mp-sidecar reports the hold lost: " +
                                               json::get_string(j.get(), "reason").value_or("no reason given"),
                       "", "", json::get_string(j.get(), "name").value_or(""),
                       json::get_string(j.get(), "owner").value_or(""), token && *token > 0 ? static_cast<uint64_t>(*token) : 0};
        if (e.token) dispatch(e);
        return true;
    }
    if (type == "shutdown") {
        {
            // No new hold may be tied to a session that is going away; one
            // granted meanwhile sees closed() (marked before the dispatch).
            std::lock_guard<std::mutex> g(mu_);
            if (!info_.id.empty()) closed_sessions_.insert(info_.id);
            info_.id.clear();
        }
        SessionEvent e{SessionEvent::Shutdown,
                       "mp-sidecar at " + base_url_ + " is shutting down (" +
                           json::get_string(j.get(), "message").value_or("no message") + ")",
                       "", "", "", "", 0};
        dispatch(e);
        return false;  // closing the stream is the acknowledgement
    }
    return true;  // ping, or a type from a newer sidecar
}

void Session::run() {
    Millis backoff = kFirstBackoff;
    for (;;) {
        bool hello_seen = false, unsupported = false, acked = false;
        std::string session_id;
        try {
            http::Client client;  // one per connection: its socket closes with it
            http::Request req;
            req.url = base_url_ + "/session";
            req.headers = {"Accept: application/x-ndjson"};
            req.connect_timeout_ms = 5000;
            req.max_response_bytes = 1u << 20;  // the head; the body streams through on_data
            std::string buf;
            bool skipping = false;
            req.on_data = [&](const char *data, size_t len) {
                buf.append(data, len);
                size_t start = 0;
                for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
                    if (skipping) {
                        skipping = false;
                        continue;
                    }
                    bool keep = true;
                    try {
                        keep = handle_line(buf.substr(start, nl - start), hello_seen, unsupported);
                    } catch (const std::exception &) {
                        // Out of memory handling one line: never a reason to
                        // close the stream (that would release our holds).
                    }
                    if (!keep) {
                        acked = hello_seen && !unsupported;
                        return false;
                    }
                    if (hello_seen && session_id.empty()) session_id = current(Millis(0)).id;
                }
                buf.erase(0, start);
                if (buf.size() > kMaxLineBytes) {
                    buf.clear();
                    skipping = true;
                }
                return true;
            };
            client.request(req);
        } catch (const std::exception &e) {
            // Unreachable or dropped: reconnect below.
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            info_.id.clear();
            settled_ = true;  // acquires stop waiting for a session
            cv_.notify_all();
        }
        if (unsupported) {
            std::this_thread::sleep_for(kUnsupportedRetry);
            continue;
        }
        if (hello_seen) backoff = kFirstBackoff;
        if (hello_seen && !acked && !session_id.empty()) {
            // The stream broke from the sidecar's side. Whether our holds
            // survive is known at the next hello (a new instance, durable or
            // not); if the same instance answers, it saw our stream close
            // and released the holds tied to it. Remember which session.
            std::lock_guard<std::mutex> g(mu_);
            broken_session_ = session_id;
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(kMaxBackoff, backoff * 2);
    }
}

}  // namespace mp::sync
