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

class Lock {
public:
    using Callback = std::function<void()>;

    // `on_lost` empty: a loss prints why and exits the process with status 1.
    Lock(LockConfig cfg, Callback on_lost);
    ~Lock();
    Lock(const Lock &) = delete;
    Lock &operator=(const Lock &) = delete;

    // Blocking acquire. timeout_ms < 0: forever. Returns false when the
    // timeout passed with the lock held elsewhere. Throws mp::Error
    // (MP_ESTATE, MP_ECANCELED, MP_ESIDECAR, ...).
    // `abort` (optional) is an extra cancel flag the caller owns.
    bool acquire(long timeout_ms, const std::atomic<bool> *abort = nullptr);
    // Background acquire; `on_acquired` runs on the callback thread.
    void lock_async(Callback on_acquired);
    // Give the lock up now (or cancel a pending async acquire). Returns false
    // when there was nothing to release.
    bool release();
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
    Outcome attempt(std::optional<MonoTime> deadline, bool retry_errors, const std::atomic<bool> *abort);
    void worker_main();
    void renew_once(std::unique_lock<std::mutex> &lk);
    void lose(std::unique_lock<std::mutex> &lk, const std::string &why);
    void post(Callback cb);  // run on the callback thread
    void dispatcher_main();
    void ensure_worker();
    void stop_threads();

    const LockConfig cfg_;
    const LockTiming timing_;
    const Callback on_lost_;
    SidecarPool pool_;

    std::mutex mu_;
    std::condition_variable cv_;
    State state_ = State::Idle;
    bool async_pending_ = false;   // worker should start an async acquire
    bool async_active_ = false;    // an async acquire is pending or running
    Callback on_acquired_;
    bool renewing_ = false;        // a renewal PUT is in flight
    bool shutdown_ = false;
    uint64_t token_ = 0;
    MonoTime last_confirmed_send_; // send time of the last confirmed acquire/renew
    MonoTime next_renew_;
    std::atomic<bool> cancel_{false};
    std::thread worker_;

    std::mutex cb_mu_;
    std::condition_variable cb_cv_;
    std::deque<Callback> callbacks_;
    bool cb_shutdown_ = false;
    std::thread dispatcher_;
    std::atomic<std::thread::id> dispatcher_id_{};
};

}  // namespace mp::sync
