#include "package/kube_pods.h"

#include <cstdio>
#include <ctime>

#include "common/error.h"
#include "http/client.h"

namespace mp::package {
namespace {

std::mutex g_stdout_mu;
constexpr size_t kMaxFollowers = 32;  // whole lines only, from every follower

// Cuts a stream into lines and prints each with the pod's prefix. The API
// server merges the container's stdout and stderr, so all goes to stdout.
class LinePrinter {
public:
    explicit LinePrinter(std::string prefix) : prefix_(std::move(prefix)) {}
    void feed(const char *d, size_t n) {
        buf_.append(d, n);
        size_t start = 0, nl;
        while ((nl = buf_.find('\n', start)) != std::string::npos) {
            emit(buf_.substr(start, nl - start));
            start = nl + 1;
        }
        buf_.erase(0, start);
        // A program that never ends its line must not grow us forever.
        if (buf_.size() > 64 * 1024) {
            emit(buf_);
            buf_.clear();
        }
    }
    void flush() {
        if (!buf_.empty()) emit(buf_);
        buf_.clear();
    }

private:
    void emit(std::string line) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        std::lock_guard<std::mutex> lk(g_stdout_mu);
        std::fprintf(stdout, "%s%s\n", prefix_.c_str(), line.c_str());
        std::fflush(stdout);
    }
    std::string prefix_, buf_;
};

std::string utc_now_rfc3339() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void sleep_unless(const std::atomic<bool> &flag, std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!flag.load() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

const cJSON *pod_container_status(const cJSON *pod, const std::string &container) {
    const cJSON *list = json::get_array(json::get_object(pod, "status"), "containerStatuses");
    const cJSON *cs;
    cJSON_ArrayForEach(cs, list) {
        if (json::get_string(cs, "name").value_or("") == container) return cs;
    }
    return nullptr;
}

PodTracker::PodTracker(kube::Client &client, std::string ns, std::string label_selector, std::string container,
                       Log log)
    : client_(client), ns_(std::move(ns)), selector_(std::move(label_selector)), container_(std::move(container)),
      log_(std::move(log)) {}

PodTracker::~PodTracker() { stop(); }

void PodTracker::report(const std::string &msg) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (msg == last_report_) return;  // a failing watch retries every second: say it once
        last_report_ = msg;
    }
    if (log_) log_(msg);
}

void PodTracker::start() { watcher_ = std::thread([this] { watch_loop(); }); }

void PodTracker::watch_loop() {
    std::string rv;
    bool need_list = true;
    while (!stop_watch_) {
        try {
            if (need_list) {
                kube::ListOptions lo;
                lo.label_selector = selector_;
                json::Ptr list = client_.list(kube::resources::kPod, ns_, lo);
                rv = kube::object_resource_version(list.get());
                apply_list(list.get());
                need_list = false;
            }
            kube::WatchOptions wo;
            wo.resource_version = rv;
            wo.label_selector = selector_;
            wo.timeout_seconds = 240;
            kube::WatchEnd end = client_.watch(
                kube::resources::kPod, ns_, wo,
                [&](const kube::WatchEvent &ev) {
                    std::string v = ev.resource_version();
                    if (!v.empty()) rv = v;
                    if (ev.type == "DELETED") forget(ev.name());
                    else if (ev.type == "ADDED" || ev.type == "MODIFIED") update(ev.object);
                    return !stop_watch_.load();
                },
                &stop_watch_);
            if (end == kube::WatchEnd::Expired) need_list = true;  // 410: our version is too old
            else if (end == kube::WatchEnd::Stopped || end == kube::WatchEnd::Canceled) break;
            // Closed: the server's timeout; watch again from rv.
            {
                std::lock_guard<std::mutex> lk(mu_);
                last_report_.clear();
            }
        } catch (const std::exception &e) {
            if (stop_watch_) break;
            // Without the watch no new pod's logs are followed; the rollout
            // itself is judged from the Deployment/Job, so keep going.
            report(std::string("watching the pods failed (retrying): ") + e.what());
            need_list = true;
            sleep_unless(stop_watch_, std::chrono::seconds(1));
        }
    }
}

void PodTracker::sync() {
    kube::ListOptions lo;
    lo.label_selector = selector_;
    json::Ptr list = client_.list(kube::resources::kPod, ns_, lo);
    apply_list(list.get());
}

void PodTracker::apply_list(const cJSON *list) {
    std::set<std::string> present;
    const cJSON *item;
    cJSON_ArrayForEach(item, json::get_array(list, "items")) {
        present.insert(kube::object_name(item));
        update(item);
    }
    std::vector<std::string> gone;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (const auto &[name, _] : pods_)
            if (!present.count(name)) gone.push_back(name);
    }
    for (const auto &n : gone) forget(n);
}

void PodTracker::forget(const std::string &name) {
    std::lock_guard<std::mutex> lk(mu_);
    pods_.erase(name);
    restarts_.erase(name);
}

void PodTracker::update(const cJSON *pod) {
    const std::string name = kube::object_name(pod);
    if (name.empty()) return;
    json::Ptr copy(cJSON_Duplicate(pod, true));
    if (!copy) throw std::bad_alloc();
    const cJSON *cs = pod_container_status(pod, container_);
    std::string restart_msg, cap_msg;
    {
        std::lock_guard<std::mutex> lk(mu_);
        pods_[name] = std::move(copy);
        if (!cs) return;
        // Tell about restarts: after the rollout, a crashing replica is
        // otherwise only visible as a gap in its log.
        int64_t restarts = json::get_int(cs, "restartCount").value_or(0);
        auto it = restarts_.find(name);
        if (it != restarts_.end() && restarts > it->second) {
            const cJSON *term = json::path(cs, {"lastState", "terminated"});
            restart_msg = "pod " + name + ": the container restarted (restart " + std::to_string(restarts);
            if (term)
                restart_msg += ", it had exited with code " + std::to_string(json::get_int(term, "exitCode").value_or(0)) +
                               (json::get_string(term, "reason") ? " (" + *json::get_string(term, "reason") + ")" : "");
            restart_msg += ")";
        }
        restarts_[name] = restarts;
        // Follow each container instance once: its ID changes when it
        // restarts, and a stream ends when its container does. A terminated
        // container is followed too: its log is still there to read (a
        // short job may finish between two events).
        const cJSON *state = json::get_object(cs, "state");
        std::string cid = json::get_string(cs, "containerID").value_or("");
        bool has_run = json::get_object(state, "running") || json::get_object(state, "terminated");
        if (has_run && !cid.empty() && !followed_.count(cid) && !stop_logs_) {
            size_t active = 0;
            for (auto &f : followers_) active += f->done ? 0 : 1;
            // Each follower is a streaming request to the API server: a
            // large deployment must not open hundreds (kubectl logs -f
            // stops at 5). A pod skipped here is followed on a later event
            // if a slot has freed.
            if (active < kMaxFollowers) follow_locked(name, cid);
            else cap_msg = "more than " + std::to_string(kMaxFollowers) +
                           " containers run at once: only the logs of that many are followed (see the others "
                           "with kubectl logs)";
        }
    }
    if (!restart_msg.empty() && log_) log_(restart_msg);
    if (!cap_msg.empty()) report(cap_msg);
}

void PodTracker::follow_locked(const std::string &pod, const std::string &container_id) {
    followed_.insert(container_id);
    // Reap finished followers so a long run with many restarts stays small.
    for (auto it = followers_.begin(); it != followers_.end();) {
        if ((*it)->done) {
            if ((*it)->thread.joinable()) (*it)->thread.join();
            it = followers_.erase(it);
        } else {
            ++it;
        }
    }
    auto f = std::make_unique<Follower>();
    Follower *self = f.get();
    followers_.push_back(std::move(f));
    self->thread = std::thread([this, pod, container_id, self] { follow_thread(pod, container_id, self); });
}

void PodTracker::follow_thread(std::string pod, std::string container_id, Follower *self) {
    LinePrinter printer("[" + pod + "] ");
    const std::string base = client_.path(kube::resources::kPod, ns_, pod, "log") +
                             "?follow=true&container=" + http::url_escape(container_);
    bool got_data = false;
    std::string last_data_time;
    int failures = 0;
    for (;;) {
        std::string p = base;
        // After a broken connection, resume from the last second that sent
        // data: a line or two may repeat, none is lost.
        if (!last_data_time.empty()) p += "&sinceTime=" + http::url_escape(last_data_time);
        try {
            client_.stream(
                p,
                [&](const char *d, size_t n) {
                    got_data = true;
                    last_data_time = utc_now_rfc3339();
                    printer.feed(d, n);
                    return true;
                },
                &stop_logs_);
            break;  // the container stopped, the pod is gone, or we were told to stop
        } catch (const kube::ApiError &e) {
            // 400: the container is not running (yet); 404: the pod is gone.
            // Before any data, let a later event of the pod try again.
            if (!got_data && !e.not_found()) {
                std::lock_guard<std::mutex> lk(mu_);
                followed_.erase(container_id);
            }
            if (!e.not_found() && e.status() != 400)
                report("cannot follow the log of pod " + pod + ": " + e.what());
            break;
        } catch (const std::exception &e) {
            if (stop_logs_) break;
            if (++failures > 5) {
                report("the log stream of pod " + pod + " failed: " + e.what());
                break;
            }
            sleep_unless(stop_logs_, std::chrono::seconds(1));
            if (last_data_time.empty()) last_data_time = utc_now_rfc3339();
        }
    }
    printer.flush();
    self->done = true;
}

bool PodTracker::wait_followers(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        bool all = true;
        {
            std::lock_guard<std::mutex> lk(mu_);
            for (auto &f : followers_) all = all && f->done.load();
        }
        if (all) return true;
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

void PodTracker::stop(std::chrono::milliseconds drain) {
    if (stopped_) return;
    stopped_ = true;
    stop_watch_ = true;
    if (watcher_.joinable()) watcher_.join();
    if (drain.count() > 0) wait_followers(drain);
    std::list<std::unique_ptr<Follower>> all;
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_logs_ = true;  // under the lock: no follower starts after this
        all.swap(followers_);
    }
    for (auto &f : all)
        if (f->thread.joinable()) f->thread.join();
}

std::vector<json::Ptr> PodTracker::pods() const {
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<json::Ptr> out;
    for (const auto &[_, p] : pods_) {
        json::Ptr c(cJSON_Duplicate(p.get(), true));
        if (!c) throw std::bad_alloc();
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace mp::package
