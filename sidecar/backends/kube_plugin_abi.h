/* The interface between mp-sidecar and its Kubernetes backend plugin
 * (mp-sidecar-kubernetes.so, built from crd_backend.cpp, lease_backend.cpp,
 * kube_backend_common.cpp and the static core).
 *
 * Why a plugin: the Kubernetes backends need libcurl (and through it
 * OpenSSL, Kerberos, LDAP, libssh2, nghttp2, ...) and libyaml. Linked into
 * the executable, those libraries are loaded and relocated in every sidecar,
 * ~3.5 MB of resident memory, although the default memory backend never uses
 * them. The executable now dlopen()s the plugin only for --backend
 * kubernetes|lease (plugin_loader.cpp).
 *
 * Why plain C here rather than handing a C++ Backend* across: the plugin and
 * the executable are always built together by the same compiler, so the C++
 * ABI would match, but each of them links libstdc++ statically (that is what
 * keeps libstdc++.so, ~1 MB resident, out of the process; sanitizer builds
 * excepted), so there are two private copies of the C++ runtime. A C++ exception thrown in one copy and
 * caught in the other, or a std::function/std::string whose code lives in
 * the other copy, would mix them. So nothing but C types crosses this
 * boundary: no exception leaves either side (every entry point and every
 * callback catches everything), strings and records are passed as views that
 * are valid only during the call, and the receiver copies them.
 *
 * Versioning: the exported symbol carries the ABI version
 * (mp_sidecar_kube_plugin_v1); an incompatible change gets a new symbol
 * (..._v2), so an executable never binds to a plugin it does not understand.
 * `abi_version` and `size` are checked as a second guard.
 */
#ifndef MP_SIDECAR_KUBE_PLUGIN_ABI_H
#define MP_SIDECAR_KUBE_PLUGIN_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MP_SKP_ABI_VERSION 1
#define MP_SKP_ENTRY_SYMBOL "mp_sidecar_kube_plugin_v1"

/* Results of the entry points that return int. */
#define MP_SKP_OK 0
#define MP_SKP_NOT_FOUND 1 /* StoreResult::NotFound */
#define MP_SKP_CONFLICT 2  /* StoreResult::Conflict */
#define MP_SKP_ERROR (-1)  /* BackendError; the message went to out->text */
#define MP_SKP_NO_MEMORY (-2) /* std::bad_alloc */

/* A lock record (LockRecord). Every string is non-NULL and NUL-terminated. */
typedef struct mp_skp_record {
    const char *name;
    const char *owner;
    uint64_t token;
    int32_t ttl_seconds;
    const char *acquire_time;
    const char *renew_time;
    const char *version;
} mp_skp_record;

/* KubeBackendOptions. Strings are non-NULL ("" = default). */
typedef struct mp_skp_options {
    const char *kubeconfig;
    const char *context;
    const char *namespace_;
    int32_t install_crd;
} mp_skp_options;

/* Where the plugin hands back results, owned by the caller. The callbacks
 * copy what they are given (pointers are valid only during the callback) and
 * never unwind into the plugin: they catch everything themselves. */
typedef struct mp_skp_out {
    void *ctx;
    /* An error message (with MP_SKP_ERROR), describe()'s line, ready()'s why. */
    void (*text)(void *ctx, const char *text);
    /* get/create/update: the stored record, once; list: once per record. */
    void (*record)(void *ctx, const mp_skp_record *rec);
} mp_skp_out;

/* The executable's logger: level 0 error, 1 warn, 2 info, 3 debug (log::Level).
 * Must not unwind. */
typedef void (*mp_skp_log_fn)(int32_t level, const char *message);
/* A lock record may have changed outside this process (Backend::start's
 * on_change). Called from a plugin thread; must not unwind. */
typedef void (*mp_skp_change_fn)(void *ctx, const char *name);

typedef struct mp_skp_backend mp_skp_backend; /* opaque: a Backend inside the plugin */

/* The plugin's entry points. Each mirrors the Backend method of the same name
 * (backend.h) and its thread-safety. No function unwinds. */
typedef struct mp_skp_plugin_v1 {
    uint32_t abi_version;     /* MP_SKP_ABI_VERSION */
    uint32_t size;            /* sizeof(mp_skp_plugin_v1) as the plugin was built */
    const char *build_version; /* MP_VERSION_STRING of the plugin's build */

    /* kind: "kubernetes" (custom resources) or "lease". Returns NULL after
     * err->text(message) on failure. log/log_level route the plugin's log
     * lines through the executable's logger. */
    mp_skp_backend *(*create)(const char *kind, const mp_skp_options *opts, mp_skp_log_fn log, int32_t log_level,
                              const mp_skp_out *err);
    void (*destroy)(mp_skp_backend *b); /* stops the backend first */

    int (*describe)(mp_skp_backend *b, const mp_skp_out *out); /* out->text(line) */
    int (*start)(mp_skp_backend *b, mp_skp_change_fn on_change, void *change_ctx, const mp_skp_out *err);
    void (*stop)(mp_skp_backend *b);
    int (*get)(mp_skp_backend *b, const char *name, const mp_skp_out *out);
    int (*create_record)(mp_skp_backend *b, const mp_skp_record *rec, const mp_skp_out *out);
    int (*update)(mp_skp_backend *b, const mp_skp_record *rec, const mp_skp_out *out);
    int (*list)(mp_skp_backend *b, const mp_skp_out *out);
    /* 1 ready, 0 not ready (out->text(why)), or MP_SKP_ERROR / MP_SKP_NO_MEMORY. */
    int (*ready)(mp_skp_backend *b, const mp_skp_out *out);
} mp_skp_plugin_v1;

/* The one symbol the plugin exports. */
typedef const mp_skp_plugin_v1 *(*mp_skp_entry_v1_fn)(void);
const mp_skp_plugin_v1 *mp_sidecar_kube_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* MP_SIDECAR_KUBE_PLUGIN_ABI_H */
