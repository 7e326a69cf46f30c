#include "sync/election.h"

#include <cstdio>

namespace mp::sync {

Election::Election(LockConfig cfg, Callback on_leader, Callback on_lost)
    : on_leader_(std::move(on_leader)), on_lost_(std::move(on_lost)), lock_(std::move(cfg), [this] {
          std::lock_guard<std::mutex> g(mu_);
          lost_ = true;
          cv_.notify_all();
      }) {}

Election::~Election() {
    stop();
    wait_stopped();
}

void Election::wait_retry() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, LockTiming::for_ttl(lock_.config().ttl_seconds).retry_period, [&] { return stop_.load(); });
}

void Election::run() {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (running_) throw Error(MP_ESTATE, "election '" + lock_.config().name + "' is already running");
        running_ = true;
        stop_ = false;  // a stop() from before this run is stale
    }
    bool warned = false;
    while (!stop_) {
        bool got = false;
        try {
            got = lock_.acquire(-1, &stop_);
            warned = false;
        } catch (const Error &e) {
            if (e.code() != MP_ECANCELED) {
                // Sidecar outages do not end an election: keep contending.
                if (!warned)
                    std::fprintf(stderr, "metaparticle: election '%s': %s (retrying)\n",
                                 lock_.config().name.c_str(), e.what());
                warned = true;
                wait_retry();
            }
            continue;
        }
        if (!got) continue;
        {
            std::lock_guard<std::mutex> g(mu_);
            lost_ = false;
            leader_ = true;
        }
        if (!stop_ && on_leader_) on_leader_();
        bool lost;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || lost_; });
            leader_ = false;
            lost = lost_ && !stop_;
        }
        if (!lost) {
            try {
                lock_.release();
            } catch (const std::exception &e) {
                std::fprintf(stderr, "metaparticle: election '%s': releasing leadership: %s\n",
                             lock_.config().name.c_str(), e.what());
            }
            break;
        }
        if (on_lost_) on_lost_();
    }
    std::lock_guard<std::mutex> g(mu_);
    running_ = false;
    leader_ = false;
    stop_ = false;
    cv_.notify_all();
}

void Election::stop() {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
    cv_.notify_all();
}

void Election::wait_stopped() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !running_; });
}

bool Election::is_leader() {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (!leader_) return false;
    }
    return lock_.held();
}

}  // namespace mp::sync
