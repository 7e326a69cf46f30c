// LockService: every lock rule of mp-sidecar, written once over any Backend.
//
// Expiry follows client-go's observed-time rule: for each lock name we
// remember the record version we last saw and *when* (monotonic clock) we
// first saw it. A record held by someone else counts as expired only after it
// has stayed unchanged for its full TTL on our own clock; the timestamps stored
// in the record are informational. This is safe under any clock offset between
// machines, and at worst late (never early) by the time it took us to notice a
// change.
//
// Waiting (`PUT ?wait=`) parks a waiter in a FIFO queue per lock name; no
// thread waits for it. A release through this sidecar hands the lock straight
// to the head of the queue (one backend write, one wake-up); a backend change
// notification, the moment the holder's record would expire, and the end of a
// restart grace period make the service try to grant the head again. Every
// waiter's completion runs exactly once: granted, timed out, or shutdown.
//
// Sessions tie holds to a client process: the HTTP server keeps one streaming
// connection per session, and when it closes (the process is gone, or its
// library acknowledged a shutdown) every hold still tied to it is released
// and handed on at once. Only a closed session frees a live hold early; a
// session that is merely silent changes nothing (TTL rules apply).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "common/time.h"

namespace mp::sidecar {

// `bytes` random bytes as lowercase hex (session and instance ids).
std::string random_hex_id(size_t bytes);

// A record as clients see it: plus whether it is held right now by the
// observed-time rule (owner set and not expired), and the session it is tied to.
struct LockView {
    LockRecord record;
    bool held = false;
    std::string session;  // "" = not tied to a session of this sidecar
};

enum class Outcome {
    Acquired,      // acquire/create/renew succeeded; view = the lock now held by the caller
    Conflict,      // held by someone else (or, for create, already exists); view = current record
    NotFound,      // release of a lock that does not exist
    Released,      // release done (or the lock was already free); view = the free record
    ShuttingDown,  // the sidecar is stopping; nothing was changed
    Recovering,    // restart grace period: nothing is granted yet (view.record.name only)
};

struct Result {
    Outcome outcome = Outcome::Conflict;
    LockView view;
};

// Counters for /metrics.
struct ServiceStats {
    uint64_t acquisitions = 0;  // a new holder took a lock (including takeovers and handovers)
    uint64_t renewals = 0;      // the holder renewed
    uint64_t releases = 0;      // a holder released
    uint64_t takeovers = 0;     // acquisitions of a lock whose holder had expired
    uint64_t handovers = 0;     // releases that gave the lock straight to a waiter
    uint64_t session_releases = 0;  // holds released because their session closed
    uint64_t backend_errors = 0;
    uint64_t waiters = 0;       // requests currently long-polling
    uint64_t sessions = 0;      // open sessions
    uint64_t locks_held = 0;    // locks acquired through this sidecar and not released or expired
};

struct AcquireRequest {
    std::string name;
    std::string owner;
    int ttl_seconds = 15;
    std::string session;                   // tie the hold to this session ("" = none)
    std::chrono::milliseconds wait{0};     // > 0: park until granted or this long
};

struct ServiceOptions {
    // Memory-style backends: reclaim released records this long after release
    // (their token counter does not live in the record). 0 = never.
    std::chrono::milliseconds reclaim_after{30000};
    // Grant nothing before this moment (restart grace period).
    MonoTime grace_until{};
};

class LockService {
public:
    // Longest `?wait=` honoured; longer requests are capped to it, so a
    // forgotten client cannot pin a connection for hours.
    static constexpr std::chrono::seconds kMaxWait{300};
    // Compare-and-swap attempts per request before reporting the backend as
    // too contended (each failed attempt means another writer succeeded).
    static constexpr int kMaxCasAttempts = 32;

    using Completion = std::function<void(const Result &)>;
    // Session events (one JSON line each) go to the HTTP server through this.
    using SessionSink = std::function<void(const std::string &session, const std::string &event_json)>;
    // Called with every hold this sidecar grants, before the grant is
    // answered (the memory backend makes its restart grace durable here).
    using GrantHook = std::function<void(const LockRecord &)>;

    LockService(Backend &backend, ServiceOptions options = {});
    ~LockService();
    LockService(const LockService &) = delete;
    LockService &operator=(const LockService &) = delete;

    void set_session_sink(SessionSink sink);
    void set_grant_hook(GrantHook hook);

    // Acquire, or renew when req.owner holds it (renewal keeps the token).
    // `done` runs exactly once: inline before acquire() returns, or later on
    // another thread (a releasing request's, the timer thread, a backend
    // watch) for a parked waiter. Returns the waiter's id when parked (for
    // abandon()), else 0. Backend failures are reported through `done`
    // only for parked waiters; the inline attempt throws BackendError.
    uint64_t acquire(const AcquireRequest &req, Completion done);
    // The requester of waiter `id` went away: drop it; `done` is not called.
    // No-op for an id that already completed.
    void abandon(uint64_t id);
    // Create the lock held by `owner`; Conflict if a record exists (even a free one).
    Result create(const std::string &name, const std::string &owner, int ttl_seconds);
    // Release: Released if `owner` held it (with `token`, only that hold) or
    // it was already free, NotFound, or Conflict (held by someone else).
    // Hands the lock to the first waiter, if any.
    Result release(const std::string &name, const std::string &owner, std::optional<uint64_t> token = std::nullopt);

    // Current state; false when the lock does not exist.
    bool get(const std::string &name, LockView *out);
    // Up to `limit` locks with names after `after`, sorted by name; *more
    // tells whether there are others.
    std::vector<LockView> list(const std::string &after, size_t limit, bool *more);

    // Sessions. open_session() returns a new id; close_session() releases
    // every hold still tied to it (and hands them on). Returns how many.
    std::string open_session();
    int close_session(const std::string &id);
    std::vector<std::string> sessions();
    // Holds this sidecar granted that are still ours (for shutdown reports).
    size_t holds_tied(const std::string &session);
    size_t holds_untied();

    // Called (from any thread) when the backend saw `name` change.
    void notify_changed(const std::string &name);

    // Refuse new acquisitions and complete every waiter with ShuttingDown.
    void begin_shutdown();
    bool shutting_down();

    // Tries parked waiters whose time came (timer thread; public for tests).
    void run_due_timers();

    ServiceStats stats();

private:
    struct Observed {
        std::string version;
        MonoTime at;
    };
    struct Waiter;
    using WaiterList = std::list<std::shared_ptr<Waiter>>;
    struct Waiter {
        uint64_t id;
        AcquireRequest req;
        MonoTime deadline;
        Completion done;
        WaiterList::iterator pos;  // in its queue, while parked (in waiters_by_id_)
    };
    struct Queue {
        WaiterList waiters;     // FIFO; removal anywhere in O(1)
        bool granting = false;  // a thread is trying to grant the head
        bool again = false;     // something changed while it did: try once more
        LockView last;          // the holder as last seen, for 409 answers at a deadline
    };
    struct Hold {
        std::string owner;
        uint64_t token = 0;
        MonoTime renewed_at;
        int ttl_seconds = 0;
        std::string session;
    };
    struct Attempt {
        Result result;
        MonoTime expires_at;         // for Conflict: when the holder's record would expire
        bool changed_hands = false;  // for Acquired: a new holder (token moved on), not a renewal
    };

    Attempt try_acquire(const AcquireRequest &req);
    // Write `rec` (a free or expired record, or none) as held by `req`'s owner.
    bool write_new_hold(const AcquireRequest &req, const LockRecord *cur, bool exists, LockRecord *out);
    void grant_head(const std::string &name);
    Result release_hold(const std::string &name, const std::string &owner, std::optional<uint64_t> token,
                        bool by_session);
    MonoTime observe(const LockRecord &rec);
    void wrote(const LockRecord &rec, const std::string &session);
    bool held_now(const LockRecord &rec, MonoTime observed_at) const;
    void forget(const std::string &name);
    // Look at `name` again at `at` (mu_ held); wakes the timer thread only
    // when this is now the earliest deadline.
    void add_timer_locked(MonoTime at, const std::string &name);
    // Remove a parked waiter from its queue (mu_ held); false if it was not parked.
    bool unpark_locked(const std::shared_ptr<Waiter> &w);
    void timer_main();
    void session_event(const std::string &session, const std::string &json);
    LockView view_of(const LockRecord &rec, bool held);
    template <typename Fn>
    auto backend_call(Fn &&fn) -> decltype(fn());

    Backend &backend_;
    const ServiceOptions opts_;
    SessionSink session_sink_;
    GrantHook grant_hook_;

    std::mutex mu_;  // guards everything below; never held during backend calls or completions
    std::map<std::string, Observed> observed_;
    std::map<std::string, Queue> queues_;
    std::unordered_map<uint64_t, std::shared_ptr<Waiter>> waiters_by_id_;  // parked waiters
    std::map<std::string, Hold> holds_;             // holds granted here, still ours
    std::map<std::string, MonoTime> released_;      // freed here, for reclaim
    std::set<std::string> sessions_;
    std::multimap<MonoTime, std::string> timers_;   // lock names to look at again
    uint64_t next_waiter_ = 1;
    bool shutting_down_ = false;
    bool stop_timer_ = false;
    ServiceStats stats_;
    std::condition_variable timer_cv_;
    std::thread timer_;
};

}  // namespace mp::sidecar
