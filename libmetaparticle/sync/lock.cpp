#include "sync/lock.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace mp::sync {
namespace {

constexpr long kMaxLongPollMs = 30000;     // one long-poll; re-issued until the caller's deadline
constexpr long kRequestSlackMs = 10000;    // added to a long-poll's wait for the HTTP timeout (no deadline)
constexpr long kReleaseTimeoutMs = 5000;
constexpr long kCancelReleaseTimeoutMs = 1000;
constexpr long kDeadlineSlackMs = 90;      // acquire(timeout) returns by timeout + this (+ scheduling)
constexpr long kOneAttemptMs = 1000;       // the budget of try_acquire / acquire(0)
constexpr long kGiveBackReserveMs = 30;    // kept from a request's budget to give back a late grant
constexpr long kSessionWaitMs = 250;       // how long a first acquire waits for the session's hello

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
    std::shared_ptr<Session> s;
    {
        std::lock_guard<std::mutex> g(session_mu_);
        s = session_;
    }
    if (s) s->remove(this);  // no session event reaches this object after this
    stop_threads();
}

void Lock::ensure_worker() {
    if (!worker_.joinable()) worker_ = std::thread([this] { worker_main(); });
}

std::string Lock::session_id(Millis max_wait, std::string *instance) {
    std::shared_ptr<Session> s;
    {
        std::lock_guard<std::mutex> g(session_mu_);
        if (!session_) {
            session_ = Session::for_url(cfg_.sidecar_url);
            session_->add(this);
        }
        s = session_;
    }
    SessionInfo info = s->current(max_wait);
    if (instance) *instance = info.instance;
    return info.id;
}

std::shared_ptr<Session> Lock::session_for_checks() {
    std::lock_guard<std::mutex> g(session_mu_);
    return session_;
}

void Lock::give_back(uint64_t token, long timeout_ms) {
    try {
        pool_.take()->release(cfg_.name, cfg_.owner, token, std::max(1L, timeout_ms));
    } catch (...) {
        // Best effort: an ungiven grant frees at its TTL.
    }
}

Lock::Outcome Lock::attempt(std::optional<MonoTime> deadline, std::optional<MonoTime> budget_end, bool retry_errors,
                            const std::atomic<bool> *abort) {
    bool warned = false;
    // A request may use the budget minus what a give-back needs.
    auto request_timeout = [&](long wait_ms) {
        if (!budget_end) return wait_ms + kRequestSlackMs;
        return std::max(1L, ms_until(*budget_end) - kGiveBackReserveMs);
    };
    for (;;) {
        if (abort->load()) return Outcome::Canceled;
        long wait_ms = kMaxLongPollMs;
        if (deadline) wait_ms = std::clamp(ms_until(*deadline), 0L, kMaxLongPollMs);
        std::string instance;
        std::string session =
            session_id(Millis(budget_end ? std::min(kSessionWaitMs, ms_until(*budget_end) / 4) : kSessionWaitMs),
                       &instance);
        uint64_t min_token;
        {
            std::lock_guard<std::mutex> g(mu_);
            min_token = max_token_seen_;
        }
        MonoTime sent = MonoClock::now();
        uint64_t granted = 0;
        try {
            PutResult r;
            {
                auto c = pool_.take();
                r = c->put(cfg_.name, cfg_.owner, cfg_.ttl_seconds, wait_ms, request_timeout(wait_ms), abort, session,
                           min_token);
                if (r.acquired) granted = r.lock.token;
                // A long-poll may be granted long after it was sent, and the
                // renewal deadline counts from the send. When the answer took
                // a while, confirm the hold with a renewal sent now (it keeps
                // the token); otherwise the hold would look stale at once.
                if (r.acquired && MonoClock::now() - sent > timing_.renew_deadline / 10) {
                    sent = MonoClock::now();
                    long t = timing_.renew_deadline.count();
                    if (budget_end) t = std::min(t, request_timeout(0));
                    r = c->put(cfg_.name, cfg_.owner, cfg_.ttl_seconds, 0, t, abort, session, granted);
                    if (r.acquired && r.lock.token != granted) {
                        granted = r.lock.token;
                        r.acquired = false;  // lapsed in between
                        give_back(granted, budget_end ? ms_until(*budget_end) : kReleaseTimeoutMs);
                        granted = 0;
                    }
                }
            }
            if (r.acquired) {
                std::unique_lock<std::mutex> lk(mu_);
                max_token_seen_ = std::max(max_token_seen_, r.lock.token);
                if (abort->load() || shutdown_) {
                    // Canceled while the sidecar granted it: give it back.
                    lk.unlock();
                    give_back(r.lock.token, kReleaseTimeoutMs);
                    return Outcome::Canceled;
                }
                state_ = State::Held;
                token_ = r.lock.token;
                hold_session_ = r.lock.session;
                hold_instance_ = instance;
                last_confirmed_send_ = sent;
                next_renew_ = sent + timing_.renew_interval;
                ensure_worker();
                cv_.notify_all();
                // Held is set before this check, and the session marks a
                // shutdown before it tells the holds: either this check or
                // the session's event sees the other, never neither.
                if (!hold_session_.empty() && session_for_checks()->closed(hold_session_))
                    lose(lk, "mp-sidecar at " + cfg_.sidecar_url + " is shutting down");
                return Outcome::Acquired;
            }
            if (deadline && MonoClock::now() >= *deadline) return Outcome::TimedOut;
        } catch (const Error &e) {
            if (granted) {
                // Granted, then the confirmation failed: do not keep it.
                give_back(granted, budget_end ? ms_until(*budget_end) : kReleaseTimeoutMs);
            }
            if (e.code() == MP_ECANCELED || e.code() == MP_ETIMEOUT) {
                // The sidecar may still grant the abandoned long-poll (it
                // can be processed after we hung up): take it back.
                long t = kCancelReleaseTimeoutMs;
                if (budget_end) t = std::min(t, ms_until(*budget_end));
                give_back(0, t);
                if (e.code() == MP_ECANCELED) return Outcome::Canceled;
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
    std::optional<MonoTime> deadline, budget_end;
    MonoTime start = MonoClock::now();
    if (timeout_ms >= 0) {
        deadline = start + Millis(timeout_ms);
        budget_end = start + Millis(timeout_ms > 0 ? timeout_ms + kDeadlineSlackMs : kOneAttemptMs + kDeadlineSlackMs);
    }
    Outcome o;
    try {
        o = attempt(deadline, budget_end, false, abort ? abort : &cancel_);
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
            Outcome o = attempt(std::nullopt, std::nullopt, true, &cancel_);
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
            // Also the wake-up after a pause (SIGSTOP): the wait returns at
            // once and renew_once() finds the deadline passed.
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
    std::string instance;
    std::string session = session_id(Millis(0), &instance);
    std::optional<PutResult> result;
    std::string error;
    int error_code = MP_OK;
    try {
        auto c = pool_.take();
        result = c->put(cfg_.name, cfg_.owner, cfg_.ttl_seconds, 0, std::max(1L, ms_until(deadline)), nullptr, session,
                        expected_token);
    } catch (const Error &e) {
        error = e.what();
        error_code = e.code();
    } catch (const std::exception &e) {
        error = e.what();
        error_code = MP_ERROR;
    }
    lk.lock();
    renewing_ = false;
    cv_.notify_all();
    if (state_ != State::Held || token_ != expected_token) return;  // released (or lost) meanwhile
    if (result && result->acquired) max_token_seen_ = std::max(max_token_seen_, result->lock.token);
    if (result && result->acquired && result->lock.token == expected_token) {
        last_confirmed_send_ = sent;
        next_renew_ = sent + timing_.renew_interval;
        if (!result->lock.session.empty() || session.empty()) hold_session_ = result->lock.session;
        hold_instance_ = instance;
        return;
    }
    if (result && result->acquired) {
        // Our record had expired and the PUT took it anew: someone else may
        // have held it in between, so this hold is not continuous.
        uint64_t fresh = result->lock.token;
        lose(lk, "the hold lapsed (the sidecar granted a new fencing token " + std::to_string(fresh) +
                     " instead of renewing " + std::to_string(expected_token) + ")");
        lk.unlock();
        give_back(fresh, kReleaseTimeoutMs);
        lk.lock();
        return;
    }
    if (result) {
        lose(lk, result->lock.reason == "Recovering"
                     ? "mp-sidecar restarted after a crash and no longer knows this hold"
                     : "the sidecar reports it is held by '" + result->lock.owner + "'");
        return;
    }
    if (error_code == MP_EPROTOCOL || error_code == MP_ESHUTDOWN) {
        // An answer we cannot trust, or a sidecar that is going away: the
        // hold cannot be vouched for any more.
        lose(lk, "a renewal failed: " + error);
        return;
    }
    if (MonoClock::now() >= deadline) {
        lose(lk, "no renewal was confirmed within " + std::to_string(timing_.renew_deadline.count()) +
                     " ms; last error: " + error);
        return;
    }
    next_renew_ = std::min(deadline, MonoClock::now() + timing_.retry_period);
}

std::shared_ptr<Done> Lock::lose(std::unique_lock<std::mutex> &lk, const std::string &why) {
    (void)lk;
    state_ = State::Idle;
    token_ = 0;
    hold_session_.clear();
    hold_instance_.clear();
    cv_.notify_all();
    return report_lost(why, true);
}

std::shared_ptr<Done> Lock::report_lost(const std::string &why, bool may_exit) {
    if (!on_lost_) {
        if (!may_exit) return nullptr;
        std::fprintf(stderr,
                     "metaparticle: lost lock '%s' held by '%s': %s. No on_lost handler was given, so the "
                     "process exits (status 1).\n",
                     cfg_.name.c_str(), cfg_.owner.c_str(), why.c_str());
        std::fflush(nullptr);
        _exit(1);
    }
    auto done = std::make_shared<Done>();
    Callback cb = on_lost_;
    auto run = [cb, done] {
        struct SetOnExit {
            Done &d;
            ~SetOnExit() { d.set(); }
        } set_on_exit{*done};
        cb();
    };
    post(run, /*essential=*/true);
    return done;
}

std::shared_ptr<Done> Lock::on_session_event(const SessionEvent &e) {
    std::unique_lock<std::mutex> lk(mu_);
    if (state_ != State::Held) return nullptr;
    switch (e.kind) {
    case SessionEvent::Shutdown:
        break;  // every hold through this sidecar
    case SessionEvent::Lost:
        if (e.name != cfg_.name || e.owner != cfg_.owner || e.token != token_) return nullptr;
        break;
    case SessionEvent::SessionClosed:
        if (hold_session_.empty() || hold_session_ != e.session) return nullptr;
        break;
    case SessionEvent::InstanceGone:
        if (hold_instance_.empty() || hold_instance_ != e.instance) return nullptr;
        break;
    }
    return lose(lk, e.why);
}

Lock::Released Lock::release(std::string *why) {
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
            return Released::Released;
        }
        cv_.notify_all();
        cv_.wait(lk, [&] { return !async_active_ || shutdown_; });
        if (state_ != State::Held) return Released::Released;
    }
    if (state_ != State::Held) return Released::NotHeld;
    // From here this call owns the end of the hold: the renewal thread and
    // session events see state_ != Held and report nothing, so a loss found
    // below is reported exactly once, here.
    uint64_t token = token_;
    bool past_deadline = MonoClock::now() >= last_confirmed_send_ + timing_.renew_deadline;
    state_ = State::Idle;
    token_ = 0;
    hold_session_.clear();
    hold_instance_.clear();
    cv_.notify_all();
    // Never let an in-flight renewal reach the sidecar after the DELETE: it
    // would take the lock again.
    cv_.wait(lk, [&] { return !renewing_; });
    lk.unlock();
    LockInfo holder;
    ReleaseResult r = ReleaseResult::Released;
    std::string error;
    try {
        // With the token, so that a hold made since by someone else (or by
        // another handle with our owner name) is never cleared.
        r = pool_.take()->release(cfg_.name, cfg_.owner, token, kReleaseTimeoutMs, &holder);
    } catch (const Error &) {
        if (!past_deadline) throw;
        // Lost anyway; the sidecar being unreachable changes nothing.
    }
    std::string reason;
    if (past_deadline)
        reason = "lock '" + cfg_.name + "' was lost before the release: no renewal was confirmed within " +
                 std::to_string(timing_.renew_deadline.count()) + " ms (the process was paused, or the sidecar "
                 "did not answer), so another holder may have had it";
    else if (r == ReleaseResult::NotOurs)
        reason = "lock '" + cfg_.name + "' was lost before the release: mp-sidecar says " +
                 (holder.owner.empty() ? std::string("it has no such hold")
                                       : "it is held by '" + holder.owner + "'") +
                 " (token " + std::to_string(token) + " was ours)";
    if (reason.empty()) return Released::Released;
    report_lost(reason, /*may_exit=*/false);  // on_lost once; the caller also gets MP_ELOST
    if (why) *why = reason;
    return Released::Lost;
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
    if (state_ != State::Held || MonoClock::now() >= last_confirmed_send_ + timing_.renew_deadline) return std::nullopt;
    return token_;
}

std::optional<std::string> Lock::holder() {
    auto info = pool_.take()->get(cfg_.name, kReleaseTimeoutMs);
    if (!info || !info->held || info->owner.empty()) return std::nullopt;
    return info->owner;
}

void Lock::post(Callback cb, bool essential) {
    std::lock_guard<std::mutex> g(cb_mu_);
    if (cb_shutdown_) return;
    callbacks_.push_back({std::move(cb), essential});
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
        if (callbacks_.empty()) return;  // shut down, nothing left to run
        Callback cb = std::move(callbacks_.front().cb);
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
        // A pending on_lost still runs (each loss is reported once, even
        // when the handle is freed right after it); other callbacks are
        // dropped.
        std::deque<Pending> keep;
        for (auto &p : callbacks_)
            if (p.essential) keep.push_back(std::move(p));
        callbacks_.swap(keep);
        cb_cv_.notify_all();
    }
    if (dispatcher_.joinable()) dispatcher_.join();
}

}  // namespace mp::sync
