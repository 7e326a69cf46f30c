// --backend=kubernetes: each lock is a Lock custom resource
// (locks.metaparticle.io/v1, namespaced) with spec.owner and spec.expiry as in
// the original Metaparticle, plus spec.token, spec.ttlSeconds,
// spec.acquireTime and spec.renewTime. The CustomResourceDefinition is
// installed when missing (AlreadyExists from a concurrent installer is fine)
// and awaited until Established; with install_crd=false its absence is an
// error pointing at deploy/crd.yaml.
#include <algorithm>
#include <chrono>
#include <thread>

#include "backends/kube_backend_common.h"
#include "kube/lock_crd.h"
#include "log.h"

namespace mp::sidecar {
namespace {

// Objects written by the original (Java) sidecar have no ttlSeconds; it used 30 s.
constexpr int kOriginalTtlSeconds = 30;

void set_or_remove_time(cJSON *spec, const char *key, const std::string &value) {
    if (value.empty())
        cJSON_DeleteItemFromObjectCaseSensitive(spec, key);
    else
        json::set_string(spec, key, value);
}

class CrdBackend final : public KubeBackend {
public:
    explicit CrdBackend(const KubeBackendOptions &opts)
        : KubeBackend(opts, Kind{kube::kLockResource, "Lock", "Kubernetes custom resources (locks.metaparticle.io)",
                                 "deploy/rbac-kubernetes.yaml"}) {}

protected:
    void record_to_object(const LockRecord &rec, cJSON *obj) const override {
        cJSON *spec = json::ensure_object(obj, "spec");
        json::set_string(spec, "owner", rec.owner);
        json::set_int(spec, "token", static_cast<int64_t>(rec.token));
        json::set_int(spec, "ttlSeconds", rec.ttl_seconds > 0 ? rec.ttl_seconds : 0);
        std::string acquire = normalize_time(rec.acquire_time);
        std::string renew = normalize_time(rec.renew_time);
        set_or_remove_time(spec, "acquireTime", acquire);
        set_or_remove_time(spec, "renewTime", renew);
        // expiry as the original wrote it (by the writer's clock; informational:
        // contenders decide by how long they observe no change).
        std::string expiry;
        if (auto t = parse_rfc3339(renew))
            expiry = rfc3339(*t + std::chrono::seconds(rec.owner.empty() ? 0 : std::max(rec.ttl_seconds, 0)));
        set_or_remove_time(spec, "expiry", expiry);
    }

    LockRecord object_to_record(const cJSON *obj) const override {
        const cJSON *spec = json::get_object(obj, "spec");
        LockRecord rec;
        rec.owner = json::get_string(spec, "owner").value_or("");
        rec.token = static_cast<uint64_t>(std::max<int64_t>(json::get_int(spec, "token").value_or(0), 0));
        auto ttl = json::get_int(spec, "ttlSeconds");
        rec.ttl_seconds = ttl ? static_cast<int>(std::clamp<int64_t>(*ttl, 0, 1 << 30))
                              : (rec.owner.empty() ? 0 : kOriginalTtlSeconds);
        rec.acquire_time = json::get_string(spec, "acquireTime").value_or("");
        rec.renew_time = json::get_string(spec, "renewTime").value_or("");
        return rec;
    }

    void type_missing(const std::string &action, const kube::ApiError &e) override {
        throw BackendError("cannot " + action + ": the CustomResourceDefinition " + kube::kLockCrdName +
                           " is not installed at " + client().server() + " (" + e.what() +
                           "); install it with `kubectl apply -f deploy/crd.yaml`");
    }

    // Make sure the Lock type is served: install the CRD when missing.
    void prepare() override {
        const std::string probe = client().path(kube::kLockResource, ns()) + "?limit=1";
        const std::string action = "list locks.metaparticle.io in namespace '" + ns() + "'";
        if (served(probe, action)) return;
        if (!options().install_crd)
            throw BackendError(std::string("the CustomResourceDefinition ") + kube::kLockCrdName +
                               " is not installed at " + client().server() +
                               " and --no-install-crd was given; install it with `kubectl apply -f deploy/crd.yaml` "
                               "(or run without --no-install-crd with the optional ClusterRole of "
                               "deploy/rbac-kubernetes.yaml)");
        log::info(std::string("installing the CustomResourceDefinition ") + kube::kLockCrdName + " at " +
                  client().server());
        try {
            client().ensure_crd(kube::lock_crd().get(), std::chrono::seconds(60));
        } catch (const kube::ApiError &e) {
            if (e.forbidden())
                throw BackendError(std::string("the CustomResourceDefinition ") + kube::kLockCrdName +
                                   " is not installed and this identity may not install it (" + e.what() +
                                   "); install deploy/crd.yaml once as a cluster administrator "
                                   "(kubectl apply -f deploy/crd.yaml), or grant the optional ClusterRole "
                                   "in deploy/rbac-kubernetes.yaml");
            throw backend_error(std::string("install the CustomResourceDefinition ") + kube::kLockCrdName, e);
        } catch (const std::bad_alloc &) {
            throw;
        } catch (const std::exception &e) {
            throw backend_error(std::string("install the CustomResourceDefinition ") + kube::kLockCrdName, e);
        }
        // Established means the API server serves the type; allow its
        // handlers a moment to catch up.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!served(probe, action)) {
            if (std::chrono::steady_clock::now() > deadline)
                throw BackendError(std::string("the CustomResourceDefinition ") + kube::kLockCrdName +
                                   " is Established but " + client().server() + " still does not serve " + probe);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        log::info(std::string("the CustomResourceDefinition ") + kube::kLockCrdName + " is established");
    }

private:
    // Whether the collection answers (true) or the type is not served (false); throws otherwise.
    bool served(const std::string &probe, const std::string &action) {
        try {
            client().raw("GET", probe);
            return true;
        } catch (const kube::ApiError &e) {
            if (e.type_not_found()) return false;
            throw backend_error(action, e);
        } catch (const std::bad_alloc &) {
            throw;
        } catch (const std::exception &e) {
            throw backend_error(action, e);
        }
    }
};

}  // namespace

std::unique_ptr<Backend> make_crd_backend(const KubeBackendOptions &opts) { return std::make_unique<CrdBackend>(opts); }

}  // namespace mp::sidecar
