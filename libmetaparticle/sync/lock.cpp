#include "sync/lock.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace mp::sync {
namespace {

constexpr long kMaxLongPollMs = 30000;     // one long-poll; re-issued until the caller's deadline
constexpr long kRequestSlackMs = 10000;    // added to a long-poll's wait for the HTTP timeout
constexpr long kReleaseTimeoutMs = 5000;
constexpr long kCancelReleaseTimeoutMs = 1000;

long ms_until(MonoTime t) {
    return static_cast<long>(std::chrono::duration_cast<Millis>(t - MonoClock::now()).count());
}

}  // namespace

LockTiming LockTiming::for_ttl(int ttl_seconds) {
    long ttl_ms = ttl_seconds * 1000L;
    LockTiming t;
    t.renew_interval = Millis(ttl_ms / 3);
    t.renew_deadline = Millis(ttl_ms * 2 / 3);
    t.retry_period = Millis(std::min(1000L, ttl_ms / 15));
    return t;
}

Lock::Lock(LockConfig cfg, Callback on_lost)
    : cfg_(std::move(cfg)), timing_(LockTiming::for_ttl(cfg_.ttl_seconds)), on_lost_(std::move(on_lost)),
      pool_(cfg_.sidecar_url) {}

Lock::~Lock() {
    try {
        release();
    } catch (...) {
        // Best effort: the sidecar could not be told; the lock frees at its TTL.
    }
    stop_threads();
}

void Lock::ensure_worker() {
    if (!worker_.joinable()) worker_ = std::thread([this] { worker_main(); });
}

Lock::Outcome Lock::attempt(std::optional<MonoTime> deadline, bool retry_errors, const std::atomic<bool> *abort) {
    bool warned = false;
    for (;;) {
        if (abort->load()) return Outcome::Canceled;
        long wait_ms = kMaxLongPollMs;
        if (deadline) wait_ms = std::clamp(ms_until(*deadline), 0L, kMaxLongPollMs);
        MonoTime sent = MonoClock::now();
        try {
            PutResult r;
            {
                auto c = pool_.take();
                r = c->put(cfg_.name, cfg_.owner, cfg_.ttl_seconds, wait_ms, wait_ms + kRequestSlackMs, abort);
                // A long-poll may be granted long after it was sent, and the
                // renewal deadline counts from the send. When the answer took
                // a while, confirm the hold with a renewal sent now (it keeps
                // the token); otherwise the hold would look stale at once.
                if (r.acquired && MonoClock::now() - sent > timing_.renew_deadline / 10) {
                    uint64_t granted = r.lock.token;
                    sent = MonoClock::now();
                    r = c->put(cfg_.name, cfg_.owner, cfg_.ttl_seconds, 0, timing_.renew_deadline.count(), abort);
                    if (r.acquired && r.lock.token != granted) r.acquired = false;  // lapsed in between
                }
            }
            if (r.acquired) {
                std::unique_lock<std::mutex> lk(mu_);
                if (abort->load() || shutdown_) {
                    // Canceled while the sidecar granted it: give it back.
                    lk.unlock();
                    try {
                        pool_.take()->release(cfg_.name, cfg_.owner, kReleaseTimeoutMs);
                    } catch (...) {
                    }
                    return Outcome::Canceled;
                }
                state_ = State::Held;
                token_ = r.lock.token;
                last_confirmed_send_ = sent;
                next_renew_ = sent + timing_.renew_interval;
                ensure_worker();
                cv_.notify_all();
                return Outcome::Acquired;
            }
            if (deadline && MonoClock::now() >= *deadline) return Outcome::TimedOut;
        } catch (const Error &e) {
            if (e.code() == MP_ECANCELED) {
                // The sidecar may still grant the abandoned long-poll (it
                // can be processed after we hung up): take it back.
                try {
                    pool_.take()->release(cfg_.name, cfg_.owner, kCancelReleaseTimeoutMs);
                } catch (...) {
                }
                return Outcome::Canceled;
            }
            if (!retry_errors) throw;
            if (!warned) {
                std::fprintf(stderr, "metaparticle: lock '%s': %s (retrying)\n", cfg_.name.c_str(), e.what());
                warned = true;
            }
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait_for(lk, timing_.retry_period, [&] { return abort->load() || shutdown_; });
            if (deadline && MonoClock::now() >= *deadline) return Outcome::TimedOut;
        }
    }
}

bool Lock::acquire(long timeout_ms, const std::atomic<bool> *abort) {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (state_ != State::Idle)
            throw Error(MP_ESTATE, "lock '" + cfg_.name + "' is already " +
                                       (state_ == State::Held ? "held" : "being acquired") + " by this handle");
        state_ = State::Acquiring;
        // A cancel() from before this call is stale (it may have been meant
        // for an earlier call): only cancels from now on count. Bindings that
        // cancel from another thread repeat it until the call returns.
        cancel_ = false;
    }
    std::optional<MonoTime> deadline;
    if (timeout_ms >= 0) deadline = MonoClock::now() + Millis(timeout_ms);
    Outcome o;
    try {
        o = attempt(deadline, false, abort ? abort : &cancel_);
    } catch (...) {
        std::lock_guard<std::mutex> g(mu_);
        state_ = State::Idle;
        cancel_ = false;
        throw;
    }
    cancel_ = false;
    if (o == Outcome::Acquired) return true;
    {
        std::lock_guard<std::mutex> g(mu_);
        state_ = State::Idle;
        cv_.notify_all();
    }
    if (o == Outcome::Canceled) throw Error(MP_ECANCELED, "acquiring lock '" + cfg_.name + "' was canceled");
    return false;
}

void Lock::lock_async(Callback on_acquired) {
    std::lock_guard<std::mutex> g(mu_);
    if (state_ != State::Idle)
        throw Error(MP_ESTATE, "lock '" + cfg_.name + "' is already " +
                                   (state_ == State::Held ? "held" : "being acquired") + " by this handle");
    state_ = State::Acquiring;
    async_pending_ = true;
    async_active_ = true;
    on_acquired_ = std::move(on_acquired);
    cancel_ = false;
    ensure_worker();
    cv_.notify_all();
}

void Lock::worker_main() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!shutdown_) {
        if (async_pending_) {
            async_pending_ = false;
            Callback cb = on_acquired_;
            lk.unlock();
            Outcome o = attempt(std::nullopt, true, &cancel_);
            lk.lock();
            async_active_ = false;
            cancel_ = false;        // consumed by this attempt
            cv_.notify_all();       // a release() may wait for async_active_
            if (o == Outcome::Acquired) {
                if (cb) post(cb);
            } else {
                state_ = State::Idle;
                cv_.notify_all();
            }
            continue;
        }
        if (state_ == State::Held) {
            if (MonoClock::now() >= next_renew_) {
                renew_once(lk);
            } else {
                cv_.wait_until(lk, next_renew_);
            }
            continue;
        }
        cv_.wait(lk);
    }
}

void Lock::renew_once(std::unique_lock<std::mutex> &lk) {
    MonoTime sent = MonoClock::now();
    MonoTime deadline = last_confirmed_send_ + timing_.renew_deadline;
    if (sent >= deadline) {
        lose(lk, "no renewal was confirmed within " + std::to_string(timing_.renew_deadline.count()) + " ms");
        return;
    }
    renewing_ = true;
    uint64_t expected_token = token_;
    lk.unlock();
    std::optional<PutResult> result;
    std::string error;
    try {
        auto c = pool_.take();
        result = c->put(cfg_.name, cfg_.owner, cfg_.ttl_seconds, 0, std::max(1L, ms_until(deadline)), nullptr);
    } catch (const std::exception &e) {
        error = e.what();
    }
    lk.lock();
    renewing_ = false;
    cv_.notify_all();
    if (state_ != State::Held) return;  // released while the renewal was in flight
    if (result && result->acquired && result->lock.token == expected_token) {
        last_confirmed_send_ = sent;
        next_renew_ = sent + timing_.renew_interval;
        return;
    }
    if (result && result->acquired) {
        // Our record had expired and the PUT took it anew: someone else may
        // have held it in between, so this hold is not continuous.
        lose(lk, "the hold lapsed (the sidecar granted a new fencing token " + std::to_string(result->lock.token) +
                     " instead of renewing " + std::to_string(expected_token) + ")");
        lk.unlock();
        try {
            pool_.take()->release(cfg_.name, cfg_.owner, kReleaseTimeoutMs);
        } catch (...) {
        }
        lk.lock();
        return;
    }
    if (result) {
        lose(lk, "the sidecar reports it is held by '" + result->lock.owner + "'");
        return;
    }
    if (MonoClock::now() >= deadline) {
        lose(lk, "no renewal was confirmed within " + std::to_string(timing_.renew_deadline.count()) +
                     " ms; last error: " + error);
        return;
    }
    next_renew_ = std::min(deadline, MonoClock::now() + timing_.retry_period);
}

void Lock::lose(std::unique_lock<std::mutex> &lk, const std::string &why) {
    state_ = State::Idle;
    token_ = 0;
    cv_.notify_all();
    if (!on_lost_) {
        std::fprintf(stderr,
                     "metaparticle: lost lock '%s' held by '%s': %s. No on_lost handler was given, so the "
                     "process exits (status 1).\n",
                     cfg_.name.c_str(), cfg_.owner.c_str(), why.c_str());
        std::fflush(nullptr);
        _exit(1);
    }
    (void)lk;
    post(on_lost_);
}

bool Lock::release() {
    std::unique_lock<std::mutex> lk(mu_);
    if (async_active_) {
        // A pending lock_async(): cancel it and wait for the worker to settle.
        cancel_ = true;
        if (async_pending_) {
            // The worker has not started the attempt (and now never will),
            // so nobody else would clear async_active_.
            async_pending_ = false;
            async_active_ = false;
            cancel_ = false;  // nothing left for it to cancel
            state_ = State::Idle;
            cv_.notify_all();
            return true;
        }
        cv_.notify_all();
        cv_.wait(lk, [&] { return !async_active_ || shutdown_; });
        if (state_ != State::Held) return true;
    }
    if (state_ != State::Held) return false;
    state_ = State::Idle;
    token_ = 0;
    cv_.notify_all();
    // Never let an in-flight renewal reach the sidecar after the DELETE: it
    // would take the lock again.
    cv_.wait(lk, [&] { return !renewing_; });
    lk.unlock();
    if (!pool_.take()->release(cfg_.name, cfg_.owner, kReleaseTimeoutMs)) {
        // 404/409: the sidecar no longer had it as ours (it had expired).
    }
    return true;
}

void Lock::cancel() {
    cancel_ = true;
    std::lock_guard<std::mutex> g(mu_);
    cv_.notify_all();
}

bool Lock::held() {
    std::lock_guard<std::mutex> g(mu_);
    return state_ == State::Held && MonoClock::now() < last_confirmed_send_ + timing_.renew_deadline;
}

std::optional<uint64_t> Lock::token() {
    std::lock_guard<std::mutex> g(mu_);
    if (state_ != State::Held) return std::nullopt;
    return token_;
}

std::optional<std::string> Lock::holder() {
    auto info = pool_.take()->get(cfg_.name, kReleaseTimeoutMs);
    if (!info || !info->held || info->owner.empty()) return std::nullopt;
    return info->owner;
}

void Lock::post(Callback cb) {
    std::lock_guard<std::mutex> g(cb_mu_);
    if (cb_shutdown_) return;
    callbacks_.push_back(std::move(cb));
    if (!dispatcher_.joinable()) {
        dispatcher_ = std::thread([this] { dispatcher_main(); });
        dispatcher_id_ = dispatcher_.get_id();
    }
    cb_cv_.notify_all();
}

void Lock::dispatcher_main() {
    std::unique_lock<std::mutex> lk(cb_mu_);
    for (;;) {
        cb_cv_.wait(lk, [&] { return cb_shutdown_ || !callbacks_.empty(); });
        if (cb_shutdown_) return;
        Callback cb = std::move(callbacks_.front());
        callbacks_.pop_front();
        lk.unlock();
        cb();
        lk.lock();
    }
}

bool Lock::on_callback_thread() const { return std::this_thread::get_id() == dispatcher_id_; }

void Lock::stop_threads() {
    {
        std::lock_guard<std::mutex> g(mu_);
        shutdown_ = true;
        cancel_ = true;
        async_pending_ = false;
        cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
    {
        std::lock_guard<std::mutex> g(cb_mu_);
        cb_shutdown_ = true;
        callbacks_.clear();
        cb_cv_.notify_all();
    }
    if (dispatcher_.joinable()) dispatcher_.join();
}

}  // namespace mp::sync
