// What the two Kubernetes backends of mp-sidecar share: the API client, the
// compare-and-swap mapping of get/create/update/list onto GET/POST/PUT/LIST
// with metadata.resourceVersion, the error mapping, readiness, and one
// list+watch loop that reports every change through on_change. A concrete
// backend only names its resource and maps LockRecord <-> object.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "backends/backend.h"
#include "common/time.h"
#include "json/json.h"
#include "kube/client.h"

namespace mp::sidecar {

class KubeBackend : public Backend {
public:
    struct Kind {
        kube::ResourceRef ref;
        std::string kind;        // "Lock", "Lease"
        std::string label;       // for describe(): "Kubernetes custom resources (locks.metaparticle.io)"
        std::string rbac_file;   // "deploy/rbac-kubernetes.yaml"
    };

    KubeBackend(const KubeBackendOptions &opts, Kind kind);
    ~KubeBackend() override;

    std::string describe() const override;
    void start(std::function<void(const std::string &name)> on_change) override;
    void stop() override;
    StoreResult get(const std::string &name, LockRecord *out) override;
    StoreResult create(LockRecord *rec) override;
    StoreResult update(LockRecord *rec) override;
    std::vector<LockRecord> list() override;
    bool ready(std::string *why) override;

protected:
    // Write the record's fields into `obj` (which already has apiVersion,
    // kind and metadata; on update it is the last object read, so fields this
    // code does not know about are kept).
    virtual void record_to_object(const LockRecord &rec, cJSON *obj) const = 0;
    // Read a record from an object (name and version are filled in by the caller).
    virtual LockRecord object_to_record(const cJSON *obj) const = 0;
    // Called by start() before anything else (the CRD backend installs its CRD).
    // `served_probe` tells whether the resource type is served.
    virtual void prepare() {}

    kube::Client &client() { return *client_; }
    const std::string &ns() const { return ns_; }
    const KubeBackendOptions &options() const { return opts_; }
    // A BackendError for failure `e` while doing `action` (e.g. "update lease x").
    BackendError backend_error(const std::string &action, const std::exception &e);
    // Throws a BackendError for a type that is not served (404 on the collection).
    [[noreturn]] virtual void type_missing(const std::string &action, const kube::ApiError &e);

    // Normalizes an RFC 3339 time to the microsecond UTC form ("" stays "").
    static std::string normalize_time(const std::string &t);

private:
    LockRecord to_record(const cJSON *obj) const;
    json::Ptr base_object(const LockRecord &rec);
    void remember(const cJSON *obj);
    void forget(const std::string &name);
    void mark_ok();
    // The API server accepted a write of `rec` (`verb`: "creation" or
    // "update") and answered with `written`: adopt it as the stored record.
    StoreResult accept_written(const cJSON *written, const char *verb, LockRecord *rec);
    void mark_failed(const std::string &why);
    bool affects_health(const std::exception &e) const;
    void watch_loop(std::string rv, std::set<std::string> known);
    void sleep_for(std::chrono::milliseconds d);

    KubeBackendOptions opts_;
    Kind kind_;
    std::unique_ptr<kube::Client> client_;
    std::string ns_;

    std::function<void(const std::string &)> on_change_;
    std::thread watcher_;
    std::atomic<bool> stop_{false};
    std::mutex stop_mu_;
    std::condition_variable stop_cv_;

    std::mutex mu_;  // guards the members below
    std::map<std::string, json::Ptr> cache_;  // last object read or written, per name
    bool healthy_ = false;
    std::string unhealthy_why_ = "not started";
    MonoTime last_ok_{};
    std::string watch_error_;  // set while the watch loop is failing

    std::mutex probe_mu_;  // one readiness probe at a time
};

}  // namespace mp::sidecar
