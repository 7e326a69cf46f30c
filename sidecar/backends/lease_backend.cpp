// --backend=lease: each lock is a coordination.k8s.io/v1 Lease, with the
// fields and meaning client-go's LeaseLock gives them, so a Go program
// electing on the same Lease and mp-sidecar exclude each other:
//   holderIdentity       = owner ("" or missing = free; client-go writes "" on release)
//   leaseDurationSeconds = TTL
//   acquireTime          = when the current holder acquired it (MicroTime)
//   renewTime            = last renewal (MicroTime)
//   leaseTransitions     = fencing token (client-go increments it on every change of holder)
// Expiry is decided by LockService exactly like client-go: a record that has
// not changed for leaseDurationSeconds on the observer's own clock.
#include <algorithm>
#include <climits>

#include "backends/kube_backend_common.h"

namespace mp::sidecar {
namespace {

// client-go's default LeaseDuration, for a held Lease that lacks leaseDurationSeconds.
constexpr int kDefaultLeaseSeconds = 15;

class LeaseBackend final : public KubeBackend {
public:
    explicit LeaseBackend(const KubeBackendOptions &opts)
        : KubeBackend(opts, Kind{kube::resources::kLease, "Lease", "Kubernetes Leases (leases.coordination.k8s.io)",
                                 "deploy/rbac-lease.yaml"}) {}

protected:
    void record_to_object(const LockRecord &rec, cJSON *obj) const override {
        cJSON *spec = json::ensure_object(obj, "spec");
        json::set_string(spec, "holderIdentity", rec.owner);
        // The API server requires leaseDurationSeconds > 0 when set.
        json::set_int(spec, "leaseDurationSeconds", rec.ttl_seconds > 0 ? rec.ttl_seconds : 1);
        set_time(spec, "acquireTime", rec.acquire_time);
        set_time(spec, "renewTime", rec.renew_time);
        json::set_int(spec, "leaseTransitions", static_cast<int64_t>(std::min<uint64_t>(rec.token, INT32_MAX)));
    }

    LockRecord object_to_record(const cJSON *obj) const override {
        const cJSON *spec = json::get_object(obj, "spec");
        LockRecord rec;
        rec.owner = json::get_string(spec, "holderIdentity").value_or("");
        auto dur = json::get_int(spec, "leaseDurationSeconds");
        rec.ttl_seconds = dur && *dur > 0 ? static_cast<int>(std::min<int64_t>(*dur, INT32_MAX))
                                          : (rec.owner.empty() ? 0 : kDefaultLeaseSeconds);
        rec.token = static_cast<uint64_t>(std::max<int64_t>(json::get_int(spec, "leaseTransitions").value_or(0), 0));
        rec.acquire_time = json::get_string(spec, "acquireTime").value_or("");
        rec.renew_time = json::get_string(spec, "renewTime").value_or("");
        return rec;
    }

    void type_missing(const std::string &action, const kube::ApiError &e) override {
        throw BackendError("cannot " + action + ": " + client().server() +
                           " does not serve coordination.k8s.io/v1 Leases (Kubernetes 1.14 or later is needed): " +
                           e.what());
    }

private:
    // MicroTime: RFC 3339 with exactly six fractional digits, UTC.
    static void set_time(cJSON *spec, const char *key, const std::string &value) {
        std::string t = normalize_time(value);
        if (t.empty())
            cJSON_DeleteItemFromObjectCaseSensitive(spec, key);
        else
            json::set_string(spec, key, t);
    }
};

}  // namespace

std::unique_ptr<Backend> make_lease_backend(const KubeBackendOptions &opts) {
    return std::make_unique<LeaseBackend>(opts);
}

}  // namespace mp::sidecar
