#include "backends/kube_backend_common.h"

#include <random>

#include "log.h"

namespace mp::sidecar {
namespace {

constexpr auto kFreshFor = std::chrono::seconds(5);          // a success this recent means "ready"
constexpr long kProbeTimeoutMs = 3000;                        // readiness probe request
constexpr auto kMinBackoff = std::chrono::milliseconds(250);  // watch loop retry
constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);

const kube::ApiError *api_error(const std::exception &e) { return dynamic_cast<const kube::ApiError *>(&e); }

}  // namespace

KubeBackend::KubeBackend(const KubeBackendOptions &opts, Kind kind) : opts_(opts), kind_(std::move(kind)) {
    kube::LoadOptions lo;
    lo.kubeconfig = opts.kubeconfig;
    lo.context = opts.context;
    lo.namespace_ = opts.namespace_;
    kube::Config cfg = kube::load_config(lo);  // throws mp::Error with a clear message
    ns_ = cfg.namespace_;
    kube::ClientOptions co;
    co.request_timeout_ms = 10000;
    co.user_agent = "mp-sidecar/" MP_VERSION_STRING;
    client_ = std::make_unique<kube::Client>(std::move(cfg), co);
}

KubeBackend::~KubeBackend() { stop(); }

std::string KubeBackend::describe() const {
    return kind_.label + " in namespace '" + ns_ + "' at " + client_->server() + " (" + client_->config().source + ")";
}

std::string KubeBackend::normalize_time(const std::string &t) {
    if (t.empty()) return t;
    auto tp = parse_rfc3339(t);
    return tp ? rfc3339(*tp) : t;
}

// ---------------------------------------------------------------------------
// Health and errors

void KubeBackend::mark_ok() {
    std::lock_guard<std::mutex> g(mu_);
    if (!healthy_ && unhealthy_why_ != "not started") log::info("the Kubernetes API server at " + client_->server() + " is reachable again");
    healthy_ = true;
    last_ok_ = MonoClock::now();
}

void KubeBackend::mark_failed(const std::string &why) {
    std::lock_guard<std::mutex> g(mu_);
    if (healthy_ || unhealthy_why_ != why) log::warn(why);
    healthy_ = false;
    unhealthy_why_ = why;
}

bool KubeBackend::affects_health(const std::exception &e) const {
    if (const kube::ApiError *ae = api_error(e))
        return ae->unauthorized() || ae->forbidden() || ae->server_error() || ae->type_not_found();
    return true;  // transport failures, unparsable answers
}

void KubeBackend::type_missing(const std::string &action, const kube::ApiError &e) {
    throw BackendError("cannot " + action + ": " + e.what() + "; this API server does not serve " +
                       kind_.ref.resource_name() + "/" + kind_.ref.version);
}

BackendError KubeBackend::backend_error(const std::string &action, const std::exception &e) {
    std::string msg;
    const kube::ApiError *ae = api_error(e);
    if (ae && ae->type_not_found()) {
        try {
            type_missing(action, *ae);
        } catch (const BackendError &be) {
            msg = be.what();
        }
    } else if (ae && ae->forbidden()) {
        msg = "cannot " + action + ": " + e.what() + "; apply " + kind_.rbac_file + " in namespace '" + ns_ +
              "' and run the pod with its service account";
    } else if (ae && ae->unauthorized()) {
        msg = "cannot " + action + ": " + e.what();
    } else {
        msg = "cannot " + action + ": " + e.what();
    }
    if (affects_health(e)) mark_failed(msg);
    return BackendError(msg);
}

bool KubeBackend::ready(std::string *why) {
    auto fresh = [this](std::string *w) -> int {  // 1 ready, 0 not, -1 unknown
        std::lock_guard<std::mutex> g(mu_);
        if (!watch_error_.empty()) {
            if (w) *w = watch_error_;
            return 0;
        }
        if (healthy_ && MonoClock::now() - last_ok_ < kFreshFor) return 1;
        return -1;
    };
    int r = fresh(why);
    if (r >= 0) return r == 1;
    std::lock_guard<std::mutex> probe(probe_mu_);
    r = fresh(why);  // another thread may just have probed
    if (r >= 0) return r == 1;
    try {
        client_->raw("GET", client_->path(kind_.ref, ns_) + "?limit=1", "", "", false, kProbeTimeoutMs);
        mark_ok();
        return true;
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        BackendError be = backend_error("list " + kind_.ref.resource_name() + " in namespace '" + ns_ + "'", e);
        if (!affects_health(e)) mark_failed(be.what());
        if (why) *why = be.what();
        return false;
    }
}

// ---------------------------------------------------------------------------
// Records <-> objects

LockRecord KubeBackend::to_record(const cJSON *obj) const {
    LockRecord rec = object_to_record(obj);
    rec.name = kube::object_name(obj);
    rec.version = kube::object_resource_version(obj);
    return rec;
}

void KubeBackend::remember(const cJSON *obj) {
    std::string name = kube::object_name(obj);
    if (name.empty()) return;
    json::Ptr copy(cJSON_Duplicate(obj, 1));
    if (!copy) throw std::bad_alloc();
    std::lock_guard<std::mutex> g(mu_);
    cache_[name] = std::move(copy);
}

void KubeBackend::forget(const std::string &name) {
    std::lock_guard<std::mutex> g(mu_);
    cache_.erase(name);
}

// The object to PUT: the last one read at that version (so labels,
// annotations and fields we do not manage survive), else a minimal one.
json::Ptr KubeBackend::base_object(const LockRecord &rec) {
    {
        std::lock_guard<std::mutex> g(mu_);
        auto it = cache_.find(rec.name);
        if (it != cache_.end() && kube::object_resource_version(it->second.get()) == rec.version) {
            json::Ptr copy(cJSON_Duplicate(it->second.get(), 1));
            if (!copy) throw std::bad_alloc();
            return copy;
        }
    }
    json::Ptr obj = json::object();
    json::set_string(obj.get(), "apiVersion", kind_.ref.api_version());
    json::set_string(obj.get(), "kind", kind_.kind);
    cJSON *md = json::ensure_object(obj.get(), "metadata");
    json::set_string(md, "name", rec.name);
    json::set_string(md, "namespace", ns_);
    json::set_string(md, "resourceVersion", rec.version);
    return obj;
}

StoreResult KubeBackend::get(const std::string &name, LockRecord *out) {
    json::Ptr obj;
    try {
        obj = client_->get_optional(kind_.ref, ns_, name);
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        throw backend_error("read " + kind_.kind + " '" + name + "' in namespace '" + ns_ + "'", e);
    }
    mark_ok();
    if (!obj) {
        forget(name);
        return StoreResult::NotFound;
    }
    remember(obj.get());
    *out = to_record(obj.get());
    return StoreResult::Ok;
}

StoreResult KubeBackend::create(LockRecord *rec) {
    json::Ptr obj = json::object();
    json::set_string(obj.get(), "apiVersion", kind_.ref.api_version());
    json::set_string(obj.get(), "kind", kind_.kind);
    cJSON *md = json::ensure_object(obj.get(), "metadata");
    json::set_string(md, "name", rec->name);
    json::set_string(md, "namespace", ns_);
    json::set_string(json::ensure_object(md, "labels"), "app.kubernetes.io/managed-by", "metaparticle");
    record_to_object(*rec, obj.get());
    json::Ptr created;
    try {
        created = client_->create(kind_.ref, ns_, obj.get());
    } catch (const kube::ApiError &e) {
        if (e.status() == 409) {  // AlreadyExists: someone else created it first
            mark_ok();
            return StoreResult::Conflict;
        }
        throw backend_error("create " + kind_.kind + " '" + rec->name + "' in namespace '" + ns_ + "'", e);
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        throw backend_error("create " + kind_.kind + " '" + rec->name + "' in namespace '" + ns_ + "'", e);
    }
    return accept_written(created.get(), "creation", rec);
}

StoreResult KubeBackend::update(LockRecord *rec) {
    if (rec->version.empty()) return StoreResult::Conflict;  // never an unconditional write
    json::Ptr obj = base_object(*rec);
    record_to_object(*rec, obj.get());
    json::Ptr stored_obj;
    try {
        stored_obj = client_->replace(kind_.ref, ns_, rec->name, obj.get());
    } catch (const kube::ApiError &e) {
        if (e.status() == 409) {  // Conflict: the resourceVersion is stale, someone else wrote
            mark_ok();
            forget(rec->name);
            return StoreResult::Conflict;
        }
        if (e.not_found() && !e.type_not_found()) {
            mark_ok();
            forget(rec->name);
            return StoreResult::NotFound;
        }
        throw backend_error("update " + kind_.kind + " '" + rec->name + "' in namespace '" + ns_ + "'", e);
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        throw backend_error("update " + kind_.kind + " '" + rec->name + "' in namespace '" + ns_ + "'", e);
    }
    return accept_written(stored_obj.get(), "update", rec);
}

StoreResult KubeBackend::accept_written(const cJSON *written, const char *verb, LockRecord *rec) {
    mark_ok();
    remember(written);
    LockRecord stored = to_record(written);
    if (stored.version.empty())
        throw BackendError("the Kubernetes API server at " + client_->server() + " answered the " + verb + " of " +
                           kind_.kind + " '" + rec->name + "' without a metadata.resourceVersion");
    *rec = std::move(stored);
    return StoreResult::Ok;
}

std::vector<LockRecord> KubeBackend::list() {
    json::Ptr lst;
    try {
        lst = client_->list(kind_.ref, ns_);
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        throw backend_error("list " + kind_.ref.resource_name() + " in namespace '" + ns_ + "'", e);
    }
    mark_ok();
    std::vector<LockRecord> out;
    const cJSON *item;
    cJSON_ArrayForEach(item, json::get_array(lst.get(), "items")) out.push_back(to_record(item));
    return out;
}

// ---------------------------------------------------------------------------
// Start, watch, stop

void KubeBackend::start(std::function<void(const std::string &)> on_change) {
    if (watcher_.joinable()) return;
    on_change_ = std::move(on_change);
    prepare();
    json::Ptr lst;
    try {
        lst = client_->list(kind_.ref, ns_);
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        throw backend_error("list " + kind_.ref.resource_name() + " in namespace '" + ns_ + "'", e);
    }
    mark_ok();
    std::set<std::string> names;
    const cJSON *item;
    cJSON_ArrayForEach(item, json::get_array(lst.get(), "items")) names.insert(kube::object_name(item));
    std::string rv = kube::object_resource_version(lst.get());
    stop_ = false;
    watcher_ = std::thread(&KubeBackend::watch_loop, this, rv, std::move(names));
}

void KubeBackend::stop() {
    {
        std::lock_guard<std::mutex> g(stop_mu_);
        stop_ = true;
    }
    stop_cv_.notify_all();
    if (watcher_.joinable()) watcher_.join();
}

void KubeBackend::sleep_for(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lk(stop_mu_);
    stop_cv_.wait_for(lk, d, [this] { return stop_.load(); });
}

// List, then watch from the list's resourceVersion; a closed stream resumes
// from the last version seen, an expired one (410) re-lists. Every event and
// every name of a re-list is reported through on_change (a re-list may hide
// changes made while we were not watching). Failures are retried with
// exponential backoff and make ready() false until the loop recovers.
void KubeBackend::watch_loop(std::string rv, std::set<std::string> known) {
    std::minstd_rand rng(static_cast<unsigned>(MonoClock::now().time_since_epoch().count()));
    auto backoff = kMinBackoff;
    bool sticky_error = false;  // a watch error that a successful list does not cure (RBAC)
    const std::string what = kind_.ref.resource_name() + " in namespace '" + ns_ + "'";
    auto notify = [this](const std::string &name) {
        try {
            if (on_change_) on_change_(name);
        } catch (const std::exception &e) {
            log::warn("change notification for '" + name + "' failed: " + e.what());
        }
    };
    while (!stop_) {
        try {
            if (rv.empty()) {
                json::Ptr lst = client_->list(kind_.ref, ns_);
                rv = kube::object_resource_version(lst.get());
                std::set<std::string> names;
                const cJSON *item;
                cJSON_ArrayForEach(item, json::get_array(lst.get(), "items")) names.insert(kube::object_name(item));
                mark_ok();
                if (!sticky_error) {
                    std::lock_guard<std::mutex> g(mu_);
                    watch_error_.clear();
                }
                for (const auto &n : known)
                    if (!names.count(n)) {
                        forget(n);
                        notify(n);
                    }
                for (const auto &n : names) notify(n);
                known = std::move(names);
            }
            const auto started = MonoClock::now();
            bool any = false;
            kube::WatchOptions wo;
            wo.resource_version = rv;
            // Reconnects are spread; after an RBAC-type failure a short watch
            // shows soon whether it works now (and clears the error).
            wo.timeout_seconds = sticky_error ? 5 : 240 + static_cast<int>(rng() % 60);
            kube::WatchEnd end = client_->watch(
                kind_.ref, ns_, wo,
                [&](const kube::WatchEvent &ev) {
                    if (!any) {
                        any = true;
                        if (sticky_error) {
                            sticky_error = false;
                            std::lock_guard<std::mutex> g(mu_);
                            watch_error_.clear();
                        }
                    }
                    std::string v = ev.resource_version();
                    if (!v.empty()) rv = v;
                    if (ev.type == "BOOKMARK") return true;
                    std::string name = ev.name();
                    if (name.empty()) return true;
                    if (ev.type == "DELETED") {
                        known.erase(name);
                        forget(name);
                    } else {
                        known.insert(name);
                    }
                    notify(name);
                    return true;
                },
                &stop_);
            if (end == kube::WatchEnd::Canceled || end == kube::WatchEnd::Stopped || stop_) break;
            if (sticky_error) {  // the watch was accepted after all
                sticky_error = false;
                std::lock_guard<std::mutex> g(mu_);
                watch_error_.clear();
            }
            if (end == kube::WatchEnd::Expired) {
                log::debug("watch of " + what + " expired (410); re-listing");
                rv.clear();
            }
            // A stream that ends at once without events is not normal: slow down.
            if (!any && MonoClock::now() - started < std::chrono::seconds(1)) {
                sleep_for(backoff);
                backoff = std::min(backoff * 2, kMaxBackoff);
            } else {
                backoff = kMinBackoff;
            }
        } catch (const std::exception &e) {
            if (stop_) break;
            const kube::ApiError *ae = api_error(e);
            if (ae && ae->gone()) {  // version too old: re-list at once
                rv.clear();
                continue;
            }
            BackendError be = backend_error("watch " + what, e);
            {
                std::lock_guard<std::mutex> g(mu_);
                if (watch_error_ != be.what() && !affects_health(e)) log::warn(be.what());  // else logged already
                watch_error_ = be.what();
            }
            sticky_error = ae && (ae->forbidden() || ae->unauthorized() || ae->type_not_found());
            rv.clear();
            auto jitter = std::chrono::milliseconds(rng() % (backoff.count() / 2 + 1));
            sleep_for(backoff + jitter);
            backoff = std::min(backoff * 2, kMaxBackoff);
        }
    }
}

}  // namespace mp::sidecar
