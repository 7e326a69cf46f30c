// The Kubernetes runner's view of its pods: a list + watch of the pods with
// the run's labels (re-listing after 410 Gone, re-watching when the server
// closes the stream), and one log follower per container instance
// (GET pods/{name}/log?follow=true) that prints every line prefixed
// "[<pod>] " on stdout, so new pods (scale-up, rollouts, restarts, job
// retries) are picked up as they start.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "json/json.h"
#include "kube/client.h"

namespace mp::package {

// The status of container `container` in `pod` (status.containerStatuses[]),
// or nullptr.
const cJSON *pod_container_status(const cJSON *pod, const std::string &container);

class PodTracker {
public:
    using Log = std::function<void(const std::string &)>;

    // `container`: the container whose logs are followed (pods of the runner
    // have exactly one). `log` takes progress lines (restarts, stream errors).
    PodTracker(kube::Client &client, std::string ns, std::string label_selector, std::string container, Log log);
    ~PodTracker();
    PodTracker(const PodTracker &) = delete;
    PodTracker &operator=(const PodTracker &) = delete;

    // Starts the watch thread (which lists first).
    void start();
    // Lists the pods now and starts followers for containers not followed
    // yet, so nothing that already ran is missed (a job's last pods can
    // finish between two watch events).
    void sync();
    // Waits up to `timeout` until every log stream has ended by itself (on a
    // real cluster a stream ends when its container exits). Returns whether
    // they all did.
    bool wait_followers(std::chrono::milliseconds timeout);
    // Stops the watch, waits up to `drain` for the log streams to end by
    // themselves (their pods' last lines), then cuts the rest. Idempotent.
    void stop(std::chrono::milliseconds drain = std::chrono::milliseconds(0));

    // Copies of the pods known now, in name order.
    std::vector<json::Ptr> pods() const;

private:
    struct Follower {
        std::thread thread;
        std::atomic<bool> done{false};
    };

    void watch_loop();
    void apply_list(const cJSON *list);
    void update(const cJSON *pod);
    void forget(const std::string &name);
    void follow_locked(const std::string &pod, const std::string &container_id);
    void follow_thread(std::string pod, std::string container_id, Follower *self);
    void report(const std::string &msg);

    kube::Client &client_;
    const std::string ns_, selector_, container_;
    Log log_;

    mutable std::mutex mu_;
    std::map<std::string, json::Ptr> pods_;   // name -> last seen object
    std::map<std::string, int64_t> restarts_;  // name -> restartCount last seen
    std::set<std::string> followed_;          // container IDs with a follower (running or done)
    std::list<std::unique_ptr<Follower>> followers_;
    std::string last_report_;

    std::thread watcher_;
    std::atomic<bool> stop_watch_{false};
    std::atomic<bool> stop_logs_{false};
    bool stopped_ = false;
};

}  // namespace mp::package
