// The exported side of mp-sidecar-kubernetes.so: wraps the Kubernetes
// backends (make_crd_backend / make_lease_backend) in the C interface of
// kube_plugin_abi.h. Every entry point converts C views to C++ values, calls
// the Backend, and turns its result or exception into a status code, so no
// exception and no C++ object crosses into the executable (see the header
// for why).
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "backends/backend.h"
#include "backends/kube_plugin_abi.h"
#include "log.h"
#include "metaparticle.h"

namespace sc = mp::sidecar;

struct mp_skp_backend {
    std::unique_ptr<sc::Backend> backend;
};

namespace {

std::string str(const char *s) { return s ? s : ""; }

sc::LockRecord from_c(const mp_skp_record *r) {
    sc::LockRecord rec;
    rec.name = str(r->name);
    rec.owner = str(r->owner);
    rec.token = r->token;
    rec.ttl_seconds = r->ttl_seconds;
    rec.acquire_time = str(r->acquire_time);
    rec.renew_time = str(r->renew_time);
    rec.version = str(r->version);
    return rec;
}

void emit(const mp_skp_out *out, const sc::LockRecord &rec) {
    mp_skp_record r{rec.name.c_str(), rec.owner.c_str(), rec.token, rec.ttl_seconds,
                    rec.acquire_time.c_str(), rec.renew_time.c_str(), rec.version.c_str()};
    out->record(out->ctx, &r);
}

int status(sc::StoreResult r) {
    switch (r) {
    case sc::StoreResult::Ok: return MP_SKP_OK;
    case sc::StoreResult::NotFound: return MP_SKP_NOT_FOUND;
    case sc::StoreResult::Conflict: return MP_SKP_CONFLICT;
    }
    return MP_SKP_ERROR;
}

// Runs `f` (returning an MP_SKP_* code); an exception becomes MP_SKP_NO_MEMORY
// or MP_SKP_ERROR with its message.
template <class F>
int guarded(const mp_skp_out *out, F &&f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return MP_SKP_NO_MEMORY;
    } catch (const std::exception &e) {
        out->text(out->ctx, e.what());
    } catch (...) {
        out->text(out->ctx, "unknown error in the Kubernetes backend plugin");
    }
    return MP_SKP_ERROR;
}

mp_skp_backend *create(const char *kind, const mp_skp_options *opts, mp_skp_log_fn log_fn, int32_t log_level,
                       const mp_skp_out *err) {
    mp_skp_backend *handle = nullptr;
    int rc = guarded(err, [&] {
        // The executable parsed the level; this copy of the log module only
        // filters by it (so debug lines are not even formatted) and forwards.
        sc::log::set_level(static_cast<sc::log::Level>(log_level));
        sc::log::set_sink(log_fn);
        sc::KubeBackendOptions o;
        o.kubeconfig = str(opts->kubeconfig);
        o.context = str(opts->context);
        o.namespace_ = str(opts->namespace_);
        o.install_crd = opts->install_crd != 0;
        const std::string k = str(kind);
        std::unique_ptr<sc::Backend> b;
        if (k == "kubernetes")
            b = sc::make_crd_backend(o);
        else if (k == "lease")
            b = sc::make_lease_backend(o);
        else
            throw std::invalid_argument("unknown Kubernetes backend '" + k + "'");
        handle = new mp_skp_backend{std::move(b)};
        return MP_SKP_OK;
    });
    if (rc == MP_SKP_NO_MEMORY) err->text(err->ctx, "out of memory");
    return handle;
}

void destroy(mp_skp_backend *b) {
    try {
        delete b;  // ~KubeBackend stops the watcher
    } catch (...) {
    }
}

int describe(mp_skp_backend *b, const mp_skp_out *out) {
    return guarded(out, [&] {
        out->text(out->ctx, b->backend->describe().c_str());
        return MP_SKP_OK;
    });
}

int start(mp_skp_backend *b, mp_skp_change_fn on_change, void *ctx, const mp_skp_out *err) {
    return guarded(err, [&] {
        b->backend->start([on_change, ctx](const std::string &name) { on_change(ctx, name.c_str()); });
        return MP_SKP_OK;
    });
}

void stop(mp_skp_backend *b) {
    try {
        b->backend->stop();
    } catch (...) {
    }
}

int get(mp_skp_backend *b, const char *name, const mp_skp_out *out) {
    return guarded(out, [&] {
        sc::LockRecord rec;
        sc::StoreResult r = b->backend->get(str(name), &rec);
        if (r == sc::StoreResult::Ok) emit(out, rec);
        return status(r);
    });
}

int create_record(mp_skp_backend *b, const mp_skp_record *in, const mp_skp_out *out) {
    return guarded(out, [&] {
        sc::LockRecord rec = from_c(in);
        sc::StoreResult r = b->backend->create(&rec);
        if (r == sc::StoreResult::Ok) emit(out, rec);
        return status(r);
    });
}

int update(mp_skp_backend *b, const mp_skp_record *in, const mp_skp_out *out) {
    return guarded(out, [&] {
        sc::LockRecord rec = from_c(in);
        sc::StoreResult r = b->backend->update(&rec);
        if (r == sc::StoreResult::Ok) emit(out, rec);
        return status(r);
    });
}

int list(mp_skp_backend *b, const mp_skp_out *out) {
    return guarded(out, [&] {
        for (const sc::LockRecord &rec : b->backend->list()) emit(out, rec);
        return MP_SKP_OK;
    });
}

int ready(mp_skp_backend *b, const mp_skp_out *out) {
    return guarded(out, [&] {
        std::string why;
        bool ok = b->backend->ready(&why);
        if (!ok) out->text(out->ctx, why.c_str());
        return ok ? 1 : 0;
    });
}

constexpr mp_skp_plugin_v1 kPlugin = {
    MP_SKP_ABI_VERSION, sizeof(mp_skp_plugin_v1), MP_VERSION_STRING,
    create, destroy, describe, start, stop, get, create_record, update, list, ready,
};

}  // namespace

// The only symbol the plugin exports (the version script in CMakeLists.txt
// hides everything else, including the plugin's private libstdc++).
extern "C" __attribute__((visibility("default"))) const mp_skp_plugin_v1 *mp_sidecar_kube_plugin_v1(void) {
    return &kPlugin;
}
