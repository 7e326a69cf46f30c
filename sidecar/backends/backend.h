// Storage backends of mp-sidecar. A backend only stores lock records with
// compare-and-swap; the lock rules (who may take a lock, observed-time
// expiry, fencing tokens, waking waiters) live once in LockService, so every
// backend behaves the same.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mp::sidecar {

struct LockRecord {
    std::string name;
    std::string owner;         // "" = free (released); the record itself stays
    uint64_t token = 0;        // fencing counter: +1 on every change of holder
    int ttl_seconds = 0;
    std::string acquire_time;  // RFC 3339, informational only
    std::string renew_time;    // RFC 3339, informational only
    std::string version;       // opaque CAS version (Kubernetes resourceVersion)
};

enum class StoreResult { Ok, NotFound, Conflict };

// The backend could not do its job (API server unreachable, 5xx, forbidden,
// unparsable answer). The message says what happened and what to do.
class BackendError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A limit of the backend was reached (the memory backend's cap on lock
// names). Answered 503 with reason TooManyLocks, not as a backend failure.
class LimitError : public BackendError {
public:
    using BackendError::BackendError;
};

class Backend {
public:
    virtual ~Backend() = default;

    // One line for logs, e.g. "kubernetes custom resources in namespace 'x' at https://...".
    virtual std::string describe() const = 0;

    // Prepare the backend (for Kubernetes: check access, install the CRD and
    // wait until Established, start watches). `on_change` is called, from a
    // backend thread, with a lock name whenever that record may have changed
    // outside this process; LockService uses it to wake waiters. Throws
    // BackendError when the backend cannot be used.
    virtual void start(std::function<void(const std::string &name)> on_change) = 0;
    // Stop background threads. Idempotent.
    virtual void stop() = 0;

    // All methods below are thread-safe and throw BackendError on failure.
    virtual StoreResult get(const std::string &name, LockRecord *out) = 0;
    // Create `rec`; Conflict if a record of that name exists. Sets rec->version.
    virtual StoreResult create(LockRecord *rec) = 0;
    // Replace the record if rec->version is still current (compare-and-swap);
    // Conflict if it changed, NotFound if it is gone. Sets rec->version.
    virtual StoreResult update(LockRecord *rec) = 0;
    virtual std::vector<LockRecord> list() = 0;

    // Whether the backend is usable now (for /readyz); `why` says why not.
    virtual bool ready(std::string *why) = 0;

    // The fencing token for a new hold of a record whose token is `current`
    // (0: no record yet). Must be greater than `current`. Backends whose
    // counter lives outside the record (memory: one counter per run, in a
    // new epoch each run) return more.
    virtual uint64_t next_token(uint64_t current) { return current + 1; }
    // Delete `rec` if it is still free and unchanged (rec.version current).
    // Only for backends whose token counter does not live in the record;
    // the others keep every record (default: false, nothing deleted).
    virtual bool reclaim(const LockRecord &rec) {
        (void)rec;
        return false;
    }
    // Whether calls may block on the network (Kubernetes): the HTTP server
    // then runs them on worker threads instead of its event loop.
    virtual bool blocking() const { return true; }
};

// `epoch`: tokens of this run are (epoch << 32) + n, so they keep growing
// across restarts when each run gets a larger epoch (state_file.h).
// `max_locks`: cap on lock names (LimitError past it).
std::unique_ptr<Backend> make_memory_backend(uint64_t epoch = 0, size_t max_locks = 65536);

// Options of both Kubernetes backends.
struct KubeBackendOptions {
    std::string kubeconfig;  // path; "" = in-cluster config, else $KUBECONFIG, else ~/.kube/config
    std::string context;     // kubeconfig context; "" = current-context
    std::string namespace_;  // "" = the pod's namespace, else the context's, else "default"
    bool install_crd = true; // custom-resource backend: create the CRD when missing
};

std::unique_ptr<Backend> make_crd_backend(const KubeBackendOptions &opts);    // --backend=kubernetes
std::unique_ptr<Backend> make_lease_backend(const KubeBackendOptions &opts);  // --backend=lease

}  // namespace mp::sidecar
