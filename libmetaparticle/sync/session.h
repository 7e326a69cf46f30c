// The process's session with one mp-sidecar (protocol-v1-ext section 2): a
// background thread keeps `GET /session` open. The sidecar ties holds to the
// session; when the stream closes (this process died) it releases them at
// once, and over the stream it tells us "lost" and "shutdown" before it lets
// anyone else take our locks.
//
// Safety rule (the sidecar relies on it): the stream is closed by us only
// after every hold made through it was marked lost (on "shutdown"), or when
// the process exits. It is never closed on a timer or a parse error.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/time.h"

namespace mp::sync {

// Set once the on_lost callback of a hold has run (or will never run).
struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    void set();
    bool wait_until(MonoTime deadline);
};

struct SessionEvent {
    enum Kind {
        Shutdown,       // the sidecar stops: every hold through it is lost
        Lost,           // one hold (name, owner, token) is no longer ours
        SessionClosed,  // the sidecar saw our stream close: holds tied to `session` were released
        InstanceGone,   // a non-durable sidecar instance died: holds confirmed by `instance` are gone
    } kind;
    std::string why;
    std::string session;   // SessionClosed
    std::string instance;  // InstanceGone
    std::string name, owner;
    uint64_t token = 0;    // Lost
};

// A lock handle's side of the session. Called on the session thread, never
// while the session holds its registry lock.
class SessionListener {
public:
    virtual ~SessionListener() = default;
    // Returns what to wait for before acknowledging (may be null).
    virtual std::shared_ptr<Done> on_session_event(const SessionEvent &e) = 0;
};

struct SessionInfo {
    std::string id;        // "" while not connected or unsupported
    std::string instance;  // the sidecar run the id belongs to
};

class Session {
public:
    // The process's session for `base_url`, started on first use. Never
    // destroyed (the stream lives until the process exits).
    static std::shared_ptr<Session> for_url(const std::string &base_url);

    void add(SessionListener *l);
    // After it returns, `l` is not and will not be called.
    void remove(SessionListener *l);
    // The current session. Waits up to `max_wait` for the first connection
    // attempt to settle (hello received, or the sidecar cannot do sessions).
    SessionInfo current(Millis max_wait);
    // True once session `id` was told to shut down. A hold granted tied to
    // it after that must count as lost: the stream is about to be closed
    // (the sidecar then releases the hold), and the shutdown event may have
    // been handled before the grant was.
    bool closed(const std::string &id);

    explicit Session(std::string base_url);

private:
    void run();
    // Handles one ndjson line; false = close the stream (acknowledge).
    bool handle_line(const std::string &line, bool &hello_seen, bool &unsupported);
    void dispatch(const SessionEvent &e);

    const std::string base_url_;

    std::mutex mu_;  // state below
    std::condition_variable cv_;
    bool settled_ = false;
    SessionInfo info_;
    std::string last_instance_;  // of the last hello, kept across breaks
    bool last_durable_ = true;
    std::string broken_session_;  // a session whose stream broke from the sidecar's side
    std::set<std::string> closed_sessions_;  // told to shut down (a few per process lifetime)

    std::mutex reg_mu_;       // listeners_
    std::mutex dispatch_mu_;  // held while calling listeners; remove() waits on it
    std::set<SessionListener *> listeners_;
};

}  // namespace mp::sync
