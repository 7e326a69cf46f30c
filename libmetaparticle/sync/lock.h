// A distributed lock held through mp-sidecar, with client-go's timing:
// renew every ttl/3, give up (report the loss) when no renewal has been
// confirmed within 2/3 of the TTL counted from when the last confirmed
// renewal was *sent*. Anyone else must first observe the record unchanged
// for a full TTL, so we always know about a loss before another holder can
// exist.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/time.h"
#include "sync/session.h"
#include "sync/sidecar_client.h"

namespace mp::sync {

struct LockConfig {
    std::string name;
    std::string owner;        // holder identity
    std::string sidecar_url;  // base URL
    int ttl_seconds = 15;
};

struct LockTiming {
    Millis renew_interval;  // ttl/3
    Millis renew_deadline;  // 2/3 ttl from the last confirmed send
    Millis retry_period;    // between failed renewals / unreachable-sidecar retries
    static LockTiming for_ttl(int ttl_seconds);
};

class Lock : private SessionListener {
public:
    using Callback = std::function<void()>;

    // `on_lost` empty: a loss prints why and exits the process with status 1.
    Lock(LockConfig cfg, Callback on_lost);
    ~Lock() override;
    Lock(const Lock &) = delete;
    Lock &operator=(const Lock &) = delete;

    // Blocking acquire. timeout_ms < 0: forever; 0: one attempt. Returns
    // within timeout_ms + ~100 ms (one attempt: 1 s + ~100 ms) whatever the
    // sidecar does. Returns false when the timeout passed with the lock held
    // elsewhere. Throws mp::Error (MP_ESTATE, MP_ECANCELED, MP_ETIMEOUT when
    // the sidecar did not answer in time, MP_ESIDECAR, MP_EPROTOCOL, ...).
    // `abort` (optional) is an extra cancel flag the caller owns.
    bool acquire(long timeout_ms, const std::atomic<bool> *abort = nullptr);
    // Background acquire; `on_acquired` runs on the callback thread.
    void lock_async(Callback on_acquired);

    enum class Released {
        Released,  // the hold was ours until the sidecar cleared it
        NotHeld,   // nothing to release (never held, or a loss already reported)
        Lost,      // the hold had been lost unnoticed; on_lost was posted
    };
    // Give the lock up now (or cancel a pending async acquire). `why` gets
    // the reason for Lost.
    Released release(std::string *why = nullptr);
    void cancel();

    bool held();
    std::optional<uint64_t> token();
    // The current holder as the sidecar sees it; nullopt when nobody holds it.
    std::optional<std::string> holder();

    const LockConfig &config() const { return cfg_; }
    // True on the thread that runs this lock's callbacks.
    bool on_callback_thread() const;

private:
    enum class State { Idle, Acquiring, Held };
    enum class Outcome { Acquired, TimedOut, Canceled };

    // Runs PUT long-polls until acquired, `deadline` passes or canceled.
    // `budget_end` bounds every request (nullopt: no bound).
    Outcome attempt(std::optional<MonoTime> deadline, std::optional<MonoTime> budget_end, bool retry_errors,
                    const std::atomic<bool> *abort);
    void give_back(uint64_t token, long timeout_ms);
    std::string session_id(Millis max_wait, std::string *instance = nullptr);
    std::shared_ptr<Session> session_for_checks();  // set once an acquire started
    void worker_main();
    void renew_once(std::unique_lock<std::mutex> &lk);
    // Ends the current hold as lost and reports it (on_lost, or exit without
    // a handler). Caller holds mu_ and has checked state_ == Held; whoever
    // moves a hold out of Held reports it, so each loss is reported once.
    std::shared_ptr<Done> lose(std::unique_lock<std::mutex> &lk, const std::string &why);
    // Posts on_lost (or, with may_exit and no handler, prints and exits).
    // The returned Done is set once on_lost has run (null without handler).
    std::shared_ptr<Done> report_lost(const std::string &why, bool may_exit);
    std::shared_ptr<Done> on_session_event(const SessionEvent &e) override;
    // Run on the callback thread. Essential callbacks (on_lost) run even
    // when the handle is being freed; others are dropped then.
    void post(Callback cb, bool essential = false);
    void dispatcher_main();
    void ensure_worker();
    void stop_threads();

    const LockConfig cfg_;
    const LockTiming timing_;
    const Callback on_lost_;
    SidecarPool pool_;
    std::shared_ptr<Session> session_;  // set on the first acquire (under session_mu_)
    std::mutex session_mu_;

    std::mutex mu_;
    std::condition_variable cv_;
    State state_ = State::Idle;
    bool async_pending_ = false;   // worker should start an async acquire
    bool async_active_ = false;    // an async acquire is pending or running
    Callback on_acquired_;
    bool renewing_ = false;        // a renewal PUT is in flight
    bool shutdown_ = false;
    uint64_t token_ = 0;
    uint64_t max_token_seen_ = 0;  // tokens of 200s never go below it
    std::string hold_session_;     // the session the hold is tied to ("" = none)
    std::string hold_instance_;    // the sidecar instance that last confirmed the hold
    MonoTime last_confirmed_send_; // send time of the last confirmed acquire/renew
    MonoTime next_renew_;
    std::atomic<bool> cancel_{false};
    std::thread worker_;

    std::mutex cb_mu_;
    std::condition_variable cb_cv_;
    struct Pending {
        Callback cb;
        bool essential;
    };
    std::deque<Pending> callbacks_;
    bool cb_shutdown_ = false;
    std::thread dispatcher_;
    std::atomic<std::thread::id> dispatcher_id_{};
};

}  // namespace mp::sync
