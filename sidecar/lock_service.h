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
// Waiting (`PUT ?wait=`) is a long-poll: a waiter blocks on a per-name
// condition variable and is woken by a release through this sidecar, by the
// backend's change notification, by the moment the current holder's record
// would expire, by its own deadline, or by shutdown. No sleep-polling.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "common/time.h"

namespace mp::sidecar {

// A record as clients see it: plus whether it is held right now by the
// observed-time rule (owner set and not expired).
struct LockView {
    LockRecord record;
    bool held = false;
};

enum class Outcome {
    Acquired,      // acquire/create/renew succeeded; view = the lock now held by the caller
    Conflict,      // held by someone else (or, for create, already exists); view = current record
    NotFound,      // release of a lock that does not exist
    Released,      // release done (or the lock was already free); view = the free record
    ShuttingDown,  // the sidecar is stopping; nothing was changed
};

struct Result {
    Outcome outcome = Outcome::Conflict;
    LockView view;
};

// Counters for /metrics.
struct ServiceStats {
    uint64_t acquisitions = 0;  // a new holder took a lock (including takeovers)
    uint64_t renewals = 0;      // the holder renewed
    uint64_t releases = 0;      // a holder released
    uint64_t takeovers = 0;     // acquisitions of a lock whose holder had expired
    uint64_t backend_errors = 0;
    uint64_t waiters = 0;       // requests currently long-polling
    uint64_t locks_held = 0;    // locks acquired through this sidecar and not released or expired
};

class LockService {
public:
    // Longest `?wait=` honoured; longer requests are capped to it, so a
    // forgotten client cannot pin a connection for hours.
    static constexpr std::chrono::seconds kMaxWait{300};
    // Compare-and-swap attempts per request before reporting the backend as
    // too contended (each failed attempt means another writer succeeded).
    static constexpr int kMaxCasAttempts = 32;

    explicit LockService(Backend &backend);
    LockService(const LockService &) = delete;
    LockService &operator=(const LockService &) = delete;

    // Acquire `name` for `owner`, or renew it if `owner` already holds it
    // (renewal keeps the token). With wait > 0, block until acquired, the wait
    // is over (then Conflict), or shutdown (ShuttingDown). `abandoned`, if
    // given, is asked after every wake-up whether the requester has gone away
    // (then Conflict is returned without acquiring), and again after a new
    // hold is written (if the requester has gone by then, the hold is released
    // again), so a lock is never left to a client that is no longer listening.
    // Throws BackendError.
    Result acquire(const std::string &name, const std::string &owner, int ttl_seconds,
                   std::chrono::milliseconds wait, const std::function<bool()> &abandoned = {});
    // Create the lock held by `owner`; Conflict if a record exists (even a free one).
    Result create(const std::string &name, const std::string &owner, int ttl_seconds);
    // Release: Released if `owner` held it or it was already free, NotFound,
    // or Conflict (held by someone else). Wakes waiters.
    Result release(const std::string &name, const std::string &owner);

    // Current state; false when the lock does not exist.
    bool get(const std::string &name, LockView *out);
    std::vector<LockView> list();  // sorted by name

    // Called (from any thread) when the backend saw `name` change: wakes its waiters.
    void notify_changed(const std::string &name);

    // Refuse new acquisitions and wake every waiter (they answer ShuttingDown).
    void begin_shutdown();
    // Release every lock acquired through this sidecar that is still ours.
    // Best effort: failures are logged. Returns how many were released.
    int release_all();

    ServiceStats stats();

private:
    struct Observed {
        std::string version;
        MonoTime at;
    };
    struct Waiters {
        std::condition_variable cv;
        uint64_t generation = 0;  // bumped by every notification
        int count = 0;
    };
    struct Tracked {
        std::string owner;
        MonoTime renewed_at;
        int ttl_seconds = 0;
    };
    struct Attempt {
        Result result;
        MonoTime expires_at;         // for Conflict: when the holder's record would expire
        bool changed_hands = false;  // for Acquired: a new holder (token moved on), not a renewal
    };

    Attempt try_acquire(const std::string &name, const std::string &owner, int ttl_seconds);
    Result give_back_if_abandoned(const std::string &name, const std::string &owner, const Attempt &a,
                                  const std::function<bool()> &abandoned);
    // release(); with `token`, only that hold is released (not a later one of the same owner).
    Result release_hold(const std::string &name, const std::string &owner, std::optional<uint64_t> token);
    MonoTime observe(const LockRecord &rec);
    // Record a write made by this sidecar (observed version, lock tracking).
    void wrote(const LockRecord &rec);
    bool held_now(const LockRecord &rec, MonoTime observed_at) const;
    void forget(const std::string &name);
    void notify_locked(const std::string &name);
    // Run a backend call, counting failures.
    template <typename Fn>
    auto backend_call(Fn &&fn) -> decltype(fn());

    Backend &backend_;
    std::mutex mu_;  // guards everything below; never held during backend calls
    std::map<std::string, Observed> observed_;
    std::map<std::string, std::unique_ptr<Waiters>> waiters_;
    std::map<std::string, Tracked> tracked_;
    bool shutting_down_ = false;
    ServiceStats stats_;
};

}  // namespace mp::sidecar
