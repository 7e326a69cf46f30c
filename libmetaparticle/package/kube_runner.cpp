// The Kubernetes runner: apply, wait for the rollout, stream the pods' logs,
// tear down. See kubernetes.h for the contract.
//
//  1. client from the kubeconfig / in-cluster configuration; namespace =
//     "namespace", else the context's (or the pod's), else "default";
//  2. objects of an earlier run that this run does not use (a Service when
//     the ports are gone, a Deployment when this is a Job now...) are
//     deleted; objects of the same names NOT labelled managed-by=metaparticle
//     are never touched (error);
//  3. server-side apply of each object (PATCH application/apply-patch+yaml,
//     fieldManager=metaparticle, force=true): an earlier run's objects are
//     updated in place (the original runner skipped existing ones). A Job's
//     pod template is immutable and a finished Job would not run again, so an
//     existing Job of ours is deleted first;
//  4. a PodTracker (kube_pods.h) watches the pods by label and follows every
//     container's log, "[<pod>] " prefixed, from the first pod on;
//  5. Deployment: poll it (every 0.5 s) until observedGeneration >=
//     generation and updated == ready == total == replicas, failing fast on
//     image pull errors and crash loops of the new pods, with a deadline and
//     progress lines; then wait for Ctrl-C. Job: poll it until Complete
//     (exit code 0) or Failed (1), failing fast on image pull errors;
//  6. teardown unless keepRunning: delete (Deployment/Job in the foreground,
//     so the pods' last lines are still printed while they stop), wait until
//     they are gone (bounded), stop following.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>
#include <thread>

#include "common/error.h"
#include "http/client.h"
#include "package/kube_pods.h"
#include "package/kube_runner.h"
#include "package/kubernetes.h"

namespace mp::package {
namespace {

using Clock = std::chrono::steady_clock;
using Log = std::function<void(const std::string &)>;

constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr auto kProgressEvery = std::chrono::seconds(10);
constexpr auto kDeleteTimeout = std::chrono::seconds(90);  // > the default 30 s termination grace period
constexpr auto kLogDrain = std::chrono::seconds(2);
constexpr auto kTransientGrace = std::chrono::seconds(60);

std::chrono::seconds rollout_timeout() {
    if (const char *e = std::getenv("METAPARTICLE_ROLLOUT_TIMEOUT")) {
        char *end = nullptr;
        long v = std::strtol(e, &end, 10);
        if (end && *end == '\0' && v > 0) return std::chrono::seconds(v);
    }
    return std::chrono::seconds(300);
}

void sleep_unless(const std::atomic<bool> &flag, std::chrono::milliseconds d) {
    auto until = Clock::now() + d;
    while (!flag.load() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

std::string lower(std::string s) {
    for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string kind_of(const cJSON *obj) { return json::get_string(obj, "kind").value_or(""); }

// "deployment/app", as kubectl names objects.
std::string obj_text(const std::string &kind, const std::string &name) { return lower(kind) + "/" + name; }

int64_t status_int(const cJSON *obj, const char *key) {
    return json::get_int(json::get_object(obj, "status"), key).value_or(0);
}

// The condition of `type` in status.conditions, or nullptr.
const cJSON *condition(const cJSON *obj, const std::string &type) {
    const cJSON *c;
    cJSON_ArrayForEach(c, json::get_array(json::get_object(obj, "status"), "conditions")) {
        if (json::get_string(c, "type").value_or("") == type) return c;
    }
    return nullptr;
}

bool condition_true(const cJSON *obj, const std::string &type) {
    const cJSON *c = condition(obj, type);
    return c && json::get_string(c, "status").value_or("") == "True";
}

std::string str(const cJSON *obj, const char *key) { return json::get_string(obj, key).value_or(""); }

bool is_image_error(const std::string &reason) {
    return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName" ||
           reason == "ErrImageNeverPull";
}

class KubeRun {
public:
    KubeRun(const Options &o, kube::Client &c, std::string image, const Log &log, const std::atomic<bool> &interrupted)
        : o_(o), c_(c), ns_(c.default_namespace()), image_(std::move(image)), log_(log), interrupted_(interrupted) {}

    int run() {
        say("deploying " + image_ + " to namespace " + ns_ + " of " + c_.describe());
        json::Ptr objects = render_objects(o_, image_, ns_);
        const bool job = o_.job_count.has_value();
        int code = 0;
        try {
            prune(objects.get());
            apply_all(objects.get());
            if (interrupted_) {
                say("interrupted");
            } else {
                tracker_ = std::make_unique<PodTracker>(c_, ns_, pod_label_selector(o_), o_.name, log_);
                tracker_->start();
                if (job) {
                    code = wait_job();
                } else if (wait_rollout()) {
                    wait_until_interrupted();
                }
            }
        } catch (...) {
            // The error is what the user needs to see; cleaning up must not
            // replace it (teardown reports its own failures as lines).
            teardown(true);
            throw;
        }
        teardown(false);
        return code;
    }

private:
    void say(const std::string &m) const {
        if (log_) log_(m);
    }

    std::string kubectl_delete_hint() const {
        std::string kinds = o_.job_count ? "job" : "deployment";
        if (!o_.ports.empty()) kinds += ",service";
        return "kubectl delete " + kinds + " -n " + ns_ + " -l " + pod_label_selector(o_);
    }

    // GET for the wait loops: a rollout or a job can take minutes, and one
    // failed poll (API server restarting, a dropped connection, 5xx) must not
    // end the run. Errors that waiting cannot fix (404, 401, 403...) and
    // failures lasting kTransientGrace are thrown.
    json::Ptr get_patiently(const kube::ResourceRef &ref, const std::string &name) {
        for (;;) {
            try {
                json::Ptr obj = c_.get(ref, ns_, name);
                failing_since_.reset();
                return obj;
            } catch (const kube::ApiError &e) {
                if (!e.server_error()) throw;
                retry_or_throw(e);
            } catch (const http::TransportError &e) {
                retry_or_throw(e);
            }
            sleep_unless(interrupted_, std::chrono::seconds(1));
            if (interrupted_) return nullptr;
        }
    }

    void retry_or_throw(const Error &e) {
        auto now = Clock::now();
        if (!failing_since_) {
            failing_since_ = now;
            say(std::string("the API server failed (retrying for up to ") +
                std::to_string(kTransientGrace.count()) + " s): " + e.what());
        }
        if (now - *failing_since_ >= kTransientGrace) throw Error(e.code(), e.what());
    }

    // Polls until the object is gone (404) or `timeout` passes.
    bool wait_gone(const kube::ResourceRef &ref, const std::string &name, std::chrono::seconds timeout,
                   const std::string &waiting_for) {
        auto start = Clock::now(), last = start;
        for (;;) {
            json::Ptr cur = c_.get_optional(ref, ns_, name);
            if (!cur) return true;
            auto now = Clock::now();
            if (now - start >= timeout) return false;
            if (now - last >= std::chrono::seconds(5)) {
                say("still waiting for " + waiting_for + " (" +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - start).count()) + " s)");
                last = now;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
    }

    void delete_and_wait(const kube::ResourceRef &ref, const std::string &kind, const std::string &name) {
        try {
            c_.remove(ref, ns_, name, "Foreground");
        } catch (const kube::ApiError &e) {
            if (!e.not_found()) throw;
        }
        if (!wait_gone(ref, name, kDeleteTimeout, obj_text(kind, name) + " to be deleted"))
            throw Error(MP_ETIMEOUT, obj_text(kind, name) + " in namespace " + ns_ + " was still being deleted after " +
                                         std::to_string(kDeleteTimeout.count()) +
                                         " s; check `kubectl describe " + lower(kind) + " " + name + " -n " + ns_ +
                                         "` (finalizers, pods stuck terminating) and run again");
    }

    // Deletes the objects an earlier run of this name left (keepRunning, or
    // an interrupted teardown) that this run does not create: a stale
    // Service or the other kind of workload would keep running beside ours,
    // and its pods carry our labels.
    void prune(const cJSON *objects) {
        std::set<std::string> wanted;
        const cJSON *obj;
        cJSON_ArrayForEach(obj, objects) wanted.insert(kind_of(obj));
        for (const char *kind : {"Service", "Deployment", "Job"}) {
            if (wanted.count(kind)) continue;
            const kube::ResourceRef &ref = resource_of_kind(kind);
            json::Ptr cur = c_.get_optional(ref, ns_, o_.name);
            if (!cur || !managed_by_us(cur.get(), o_.name)) continue;
            say("deleting " + obj_text(kind, o_.name) + " left by an earlier run (this run does not use it)");
            delete_and_wait(ref, kind, o_.name);
        }
    }

    void apply_all(const cJSON *objects) {
        const cJSON *obj;
        cJSON_ArrayForEach(obj, objects) {
            const std::string kind = kind_of(obj), name = kube::object_name(obj);
            const kube::ResourceRef &ref = resource_of_kind(kind);
            json::Ptr existing = c_.get_optional(ref, ns_, name);
            if (existing && !managed_by_us(existing.get(), o_.name))
                throw Error(MP_ERROR, obj_text(kind, name) + " already exists in namespace " + ns_ +
                                          " and was not created by containerize (it lacks the labels " +
                                          pod_label_selector(o_) + "); it is left alone: choose another \"name\" or "
                                          "\"namespace\", or delete it (`kubectl delete " + lower(kind) + " " + name +
                                          " -n " + ns_ + "`)");
            if (existing && json::path(existing.get(), {"metadata", "deletionTimestamp"})) {
                // Applying to an object being deleted would update it just
                // before it disappears: let the earlier teardown finish.
                say("waiting for " + obj_text(kind, name) + " of an earlier run to finish terminating");
                delete_and_wait(ref, kind, name);
                existing.reset();
            }
            if (existing && kind == "Job") {
                // A Job's pod template is immutable and a finished Job does
                // not run again: running the job again means a new Job.
                say("deleting " + obj_text(kind, name) + " of an earlier run, to run the job again");
                delete_and_wait(ref, kind, name);
                existing.reset();
            }
            json::Ptr result = c_.apply(ref, ns_, obj);
            applied_.push_back({&ref, kind, name});
            std::string verb = !existing ? "created"
                               : kube::object_resource_version(existing.get()) == kube::object_resource_version(result.get())
                                   ? "unchanged"
                                   : "configured";
            say(obj_text(kind, name) + " " + verb + " (server-side apply)");
            if (kind == "Deployment")
                generation_ = json::get_int(json::get_object(result.get(), "metadata"), "generation").value_or(0);
        }
    }

    // The pods of this run: running our exact image (pinned by digest, so
    // the pods of an earlier build, possibly still crashing, are not judged)
    // and not being deleted.
    std::vector<json::Ptr> current_pods() const {
        std::vector<json::Ptr> out;
        for (auto &p : tracker_->pods()) {
            if (json::path(p.get(), {"metadata", "deletionTimestamp"})) continue;
            bool ours = false;
            const cJSON *c;
            cJSON_ArrayForEach(c, json::path(p.get(), {"spec", "containers"})) {
                if (str(c, "name") == o_.name && str(c, "image") == image_) ours = true;
            }
            if (ours) out.push_back(std::move(p));
        }
        return out;
    }

    std::string last_log_lines(const std::string &pod) {
        std::string base = c_.path(kube::resources::kPod, ns_, pod, "log") +
                           "?container=" + http::url_escape(o_.name) + "&tailLines=20";
        // A crash-looping container is usually waiting for its restart: the
        // lines that explain the crash are the previous instance's.
        for (const char *extra : {"&previous=true", ""}) {
            http::Response r;
            try {
                r = c_.raw("GET", base + extra, "", "", true);
            } catch (const std::exception &e) {
                return std::string("\n    (cannot read its log: ") + e.what() + ")";
            }
            if (r.status == 200) {
                std::string text = r.body;
                while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
                if (text.empty()) continue;
                std::string out;
                size_t start = 0;
                while (start <= text.size()) {
                    size_t nl = text.find('\n', start);
                    if (nl == std::string::npos) nl = text.size();
                    out += "\n    | " + text.substr(start, nl - start);
                    start = nl + 1;
                }
                return out;
            }
        }
        return "\n    (it printed nothing)";
    }

    // Throws for the failures that waiting cannot fix.
    void check_pods(bool job) {
        for (auto &p : current_pods()) {
            const std::string pod = kube::object_name(p.get());
            const cJSON *cs = pod_container_status(p.get(), o_.name);
            const cJSON *waiting = json::path(cs, {"state", "waiting"});
            const std::string reason = str(waiting, "reason"), message = str(waiting, "message");
            if (is_image_error(reason))
                throw Error(MP_EREGISTRY,
                            "the cluster cannot pull the image " + image_ + ": pod " + pod + " is waiting with " +
                                reason + (message.empty() ? "" : " (" + message + ")") +
                                ". The image was pushed from this machine; the cluster's nodes must reach the "
                                "registry under the same name (\"repository\": localhost or 127.0.0.1 means each "
                                "node itself), and a private registry needs image-pull credentials in namespace " +
                                ns_ + " (a secret added to imagePullSecrets of its default service account)");
            // With restartPolicy Never a Job's pods do not loop: they fail,
            // and the Job says so.
            if (reason == "CrashLoopBackOff" && !job) {
                const cJSON *term = json::path(cs, {"lastState", "terminated"});
                std::string detail = "restarted " + std::to_string(json::get_int(cs, "restartCount").value_or(0)) + " times";
                const int64_t exit_code = term ? json::get_int(term, "exitCode").value_or(-1) : -1;
                if (term)
                    detail += ", last exit code " + std::to_string(exit_code) +
                              (str(term, "reason").empty() ? "" : " (" + str(term, "reason") + ")");
                // Exiting 0 is no crash of the program: it is a program that
                // finishes, run as a Deployment, which restarts it forever.
                std::string why = exit_code == 0 ? "the program ends, but a Deployment's pods must keep running (for "
                                                   "a program that finishes, use \"jobSpec\")"
                                                 : "the program fails when it starts in the cluster";
                throw Error(MP_ERROR, "pod " + pod + " of " + obj_text("Deployment", o_.name) +
                                          " is crash-looping (CrashLoopBackOff, " + detail + "): " + why +
                                          ". Its last log lines:" +
                                          last_log_lines(pod) + "\n(more: `kubectl logs -n " + ns_ + " " + pod +
                                          " --previous`)");
            }
        }
    }

    // Why the new pods are not ready yet, e.g. "app-x-1: ContainerCreating".
    std::string pod_reasons() {
        std::string out;
        for (auto &p : current_pods()) {
            const std::string pod = kube::object_name(p.get());
            const cJSON *cs = pod_container_status(p.get(), o_.name);
            std::string why;
            if (const cJSON *w = json::path(cs, {"state", "waiting"})) why = str(w, "reason");
            else if (json::path(cs, {"state", "running"}) && !json::get_bool(cs, "ready").value_or(false)) why = "running, not ready";
            const cJSON *sched = condition(p.get(), "PodScheduled");
            if (sched && str(sched, "status") == "False")
                why = str(sched, "reason") + (str(sched, "message").empty() ? "" : ": " + str(sched, "message"));
            if (why.empty() && !cs) why = str(json::get_object(p.get(), "status"), "phase");
            if (why.empty()) continue;
            out += (out.empty() ? "; " : ", ") + pod + ": " + why;
        }
        return out;
    }

    // Returns false when interrupted first.
    bool wait_rollout() {
        const auto timeout = rollout_timeout();
        const auto start = Clock::now();
        auto last_print = start;
        std::string last_summary;
        const std::string what = obj_text("Deployment", o_.name);
        for (;;) {
            if (interrupted_) {
                say("interrupted while waiting for the rollout");
                return false;
            }
            json::Ptr d = get_patiently(kube::resources::kDeployment, o_.name);
            if (!d) continue;  // interrupted
            check_pods(false);
            const int64_t want = json::get_int(json::get_object(d.get(), "spec"), "replicas").value_or(1);
            const int64_t gen = json::get_int(json::get_object(d.get(), "metadata"), "generation").value_or(0);
            const int64_t observed = status_int(d.get(), "observedGeneration");
            const int64_t updated = status_int(d.get(), "updatedReplicas"), ready = status_int(d.get(), "readyReplicas"),
                          total = status_int(d.get(), "replicas");
            const bool observed_ok = observed >= std::max(gen, generation_);
            if (observed_ok && updated == want && ready == want && total == want) {
                say(what + " rolled out: " + std::to_string(ready) + "/" + std::to_string(want) + " replica(s) ready");
                return true;
            }
            const cJSON *progressing = condition(d.get(), "Progressing");
            if (progressing && str(progressing, "reason") == "ProgressDeadlineExceeded")
                throw Error(MP_ETIMEOUT, what + " exceeded its progress deadline: " + str(progressing, "message") +
                                             pod_reasons() + "; see `kubectl describe deployment " + o_.name + " -n " +
                                             ns_ + "`");
            std::string summary = !observed_ok ? "waiting for the controller to see the new spec"
                                               : std::to_string(updated) + " of " + std::to_string(want) +
                                                     " replica(s) updated, " + std::to_string(ready) + " ready" +
                                                     (total > want ? ", " + std::to_string(total - updated) +
                                                                         " old replica(s) terminating"
                                                                   : "");
            summary += pod_reasons();
            auto now = Clock::now();
            if (now - start >= timeout)
                throw Error(MP_ETIMEOUT, what + " did not finish rolling out within " + std::to_string(timeout.count()) +
                                             " s (" + summary + "); see `kubectl describe deployment " + o_.name +
                                             " -n " + ns_ + "` and `kubectl get events -n " + ns_ +
                                             "` (the deadline is $METAPARTICLE_ROLLOUT_TIMEOUT seconds, default 300)");
            if (summary != last_summary || now - last_print >= kProgressEvery) {
                say("waiting for " + what + ": " + summary);
                last_summary = summary;
                last_print = now;
            }
            sleep_unless(interrupted_, kPollInterval);
        }
    }

    // How to reach the Service; for a LoadBalancer also whether the external
    // address is known yet.
    bool describe_service(bool first) {
        json::Ptr s = c_.get_optional(kube::resources::kService, ns_, o_.name);
        if (!s) return true;
        const cJSON *spec = json::get_object(s.get(), "spec");
        std::string ports;
        for (int p : o_.ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
        std::string svc = obj_text("Service", o_.name);
        if (str(spec, "type") == "LoadBalancer") {
            std::string addr;
            const cJSON *ing;
            cJSON_ArrayForEach(ing, json::path(s.get(), {"status", "loadBalancer", "ingress"})) {
                std::string a = str(ing, "ip").empty() ? str(ing, "hostname") : str(ing, "ip");
                if (!a.empty()) addr += (addr.empty() ? "" : ", ") + a;
            }
            if (!addr.empty()) {
                say(svc + ": public at " + addr + " (port " + ports + ")");
                return true;
            }
            if (first) say(svc + ": LoadBalancer, external address pending (shown here once the cluster assigns it)");
            return false;
        }
        say(svc + ": ClusterIP " + str(spec, "clusterIP") + " (port " + ports + "), in the cluster " + o_.name + "." +
            ns_ + ".svc; from this machine: kubectl port-forward -n " + ns_ + " " + svc + " " +
            std::to_string(o_.ports.front()));
        return true;
    }

    void wait_until_interrupted() {
        bool service_done = o_.ports.empty();
        bool first = true;
        auto next_check = Clock::now();
        say("following the pods' logs; Ctrl-C to " +
            std::string(o_.keep_running ? "stop following (the deployment keeps running)" : "stop and delete the deployment"));
        while (!interrupted_) {
            if (!service_done && Clock::now() >= next_check) {
                try {
                    service_done = describe_service(first);
                } catch (const std::exception &e) {
                    say(std::string("cannot read the Service: ") + e.what());
                    service_done = true;
                }
                first = false;
                next_check = Clock::now() + std::chrono::seconds(2);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        say("interrupted");
    }

    // Returns the exit code: 0 when the Job completed (or we were
    // interrupted), 1 when it failed.
    int wait_job() {
        const std::string what = obj_text("Job", o_.name);
        std::string last_summary;
        auto last_print = Clock::now();
        for (;;) {
            if (interrupted_) {
                say("interrupted while " + what + " runs");
                return 0;
            }
            json::Ptr j = get_patiently(kube::resources::kJob, o_.name);
            if (!j) continue;  // interrupted
            const int64_t succeeded = status_int(j.get(), "succeeded"), failed = status_int(j.get(), "failed"),
                          active = status_int(j.get(), "active");
            if (condition_true(j.get(), "Complete") || condition_true(j.get(), "Failed")) {
                bool ok = condition_true(j.get(), "Complete");
                // Print every pod's last lines before reporting and deleting.
                try {
                    tracker_->sync();
                } catch (const std::exception &) {
                }
                tracker_->wait_followers(kLogDrain);
                if (ok) {
                    say(what + " completed: " + std::to_string(succeeded) + " of " + std::to_string(*o_.job_count) +
                        " succeeded");
                    return 0;
                }
                const cJSON *f = condition(j.get(), "Failed");
                std::string failures;
                for (auto &p : tracker_->pods()) {
                    const cJSON *term = json::path(pod_container_status(p.get(), o_.name), {"state", "terminated"});
                    if (str(json::get_object(p.get(), "status"), "phase") != "Failed" || !term) continue;
                    failures += "; pod " + kube::object_name(p.get()) + " exited with code " +
                                std::to_string(json::get_int(term, "exitCode").value_or(0)) +
                                (str(term, "reason").empty() ? "" : " (" + str(term, "reason") + ")");
                }
                say(what + " failed: " + str(f, "reason") + (str(f, "message").empty() ? "" : ": " + str(f, "message")) +
                    failures);
                return 1;
            }
            check_pods(true);
            std::string summary = std::to_string(active) + " running, " + std::to_string(succeeded) + " of " +
                                  std::to_string(*o_.job_count) + " succeeded" +
                                  (failed ? ", " + std::to_string(failed) + " failed" : "") + pod_reasons();
            auto now = Clock::now();
            if (summary != last_summary || now - last_print >= kProgressEvery * 3) {
                say(what + ": " + summary);
                last_summary = summary;
                last_print = now;
            }
            sleep_unless(interrupted_, kPollInterval);
        }
    }

    void teardown(bool after_error) {
        if (o_.keep_running) {
            if (tracker_) tracker_->stop(after_error ? std::chrono::milliseconds(0) : kLogDrain);
            if (!applied_.empty())
                say("keepRunning: leaving the objects in namespace " + ns_ + "; delete them with: " + kubectl_delete_hint());
            return;
        }
        if (applied_.empty()) {
            if (tracker_) tracker_->stop();
            return;
        }
        say(after_error ? "the run failed: deleting what it applied" : "deleting what this run applied");
        std::vector<std::string> waiting, deleted, failed;
        // Reverse apply order: the workload before its Service. Foreground:
        // the workload object stays until its pods are gone, so waiting for
        // it means waiting for the pods (their last lines are still
        // followed meanwhile).
        for (auto it = applied_.rbegin(); it != applied_.rend(); ++it) {
            bool workload = it->kind != "Service";
            try {
                c_.remove(*it->ref, ns_, it->name, workload ? "Foreground" : "Background");
                if (workload) waiting.push_back(it->name);
                deleted.push_back(obj_text(it->kind, it->name));
            } catch (const kube::ApiError &e) {
                if (e.not_found()) continue;
                failed.push_back(obj_text(it->kind, it->name));
                say("could not delete " + obj_text(it->kind, it->name) + ": " + e.what());
            } catch (const std::exception &e) {
                failed.push_back(obj_text(it->kind, it->name));
                say("could not delete " + obj_text(it->kind, it->name) + ": " + e.what());
            }
        }
        for (auto it = applied_.rbegin(); it != applied_.rend(); ++it) {
            if (it->kind == "Service") continue;
            if (std::find(waiting.begin(), waiting.end(), it->name) == waiting.end()) continue;
            try {
                if (!wait_gone(*it->ref, it->name, kDeleteTimeout, "the pods of " + obj_text(it->kind, it->name) + " to stop"))
                    say(obj_text(it->kind, it->name) + " is still terminating after " +
                        std::to_string(kDeleteTimeout.count()) + " s; the cluster finishes deleting it in the background");
            } catch (const std::exception &e) {
                say("could not check that " + obj_text(it->kind, it->name) + " is gone: " + e.what());
            }
        }
        if (tracker_) tracker_->stop(kLogDrain);
        if (!deleted.empty()) {
            std::string list;
            for (auto &d : deleted) list += (list.empty() ? "" : ", ") + d;
            say("deleted " + list);
        }
        if (!failed.empty()) say("delete the rest with: " + kubectl_delete_hint());
    }

    struct Applied {
        const kube::ResourceRef *ref;
        std::string kind, name;
    };

    const Options &o_;
    kube::Client &c_;
    const std::string ns_;
    const std::string image_;
    const Log &log_;
    const std::atomic<bool> &interrupted_;
    std::vector<Applied> applied_;
    int64_t generation_ = 0;
    std::optional<Clock::time_point> failing_since_;
    std::unique_ptr<PodTracker> tracker_;
};

}  // namespace

int run_kubernetes(const Options &o, const Image &image, const std::function<void(const std::string &)> &log,
                   const std::atomic<bool> &interrupted) {
    auto client = make_kube_client(o);
    KubeRun run(o, *client, kubernetes_image(image), log, interrupted);
    return run.run();
}

}  // namespace mp::package
