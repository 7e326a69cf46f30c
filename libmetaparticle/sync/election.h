// Leader election: a Lock held for as long as the process is healthy, plus
// callbacks, run-until-stopped, and contending again after a loss (which the
// original clients never did).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "sync/lock.h"

namespace mp::sync {

class Election {
public:
    using Callback = std::function<void()>;

    Election(LockConfig cfg, Callback on_leader, Callback on_lost);
    ~Election();

    // Blocks until stop(). Callbacks run on this thread. Throws MP_ESTATE
    // when already running.
    void run();
    void stop();
    bool is_leader();
    std::optional<std::string> leader() { return lock_.holder(); }
    void wait_stopped();  // until run() has returned (for free)
    const std::string &identity() const { return lock_.config().owner; }

private:
    void wait_retry();

    Callback on_leader_, on_lost_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    bool lost_ = false;
    bool leader_ = false;
    std::atomic<bool> stop_{false};
    Lock lock_;  // last: its callback thread touches the members above
};

}  // namespace mp::sync
