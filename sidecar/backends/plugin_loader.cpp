#include "backends/plugin_loader.h"

#include <dlfcn.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

#include "backends/kube_plugin_abi.h"
#include "log.h"
#include "metaparticle.h"

// Set by sidecar/CMakeLists.txt: the plugin's file name, and the install
// directory of plugins relative to the install directory of the executable.
#ifndef MP_SIDECAR_KUBE_PLUGIN_FILE
#error "MP_SIDECAR_KUBE_PLUGIN_FILE must name the plugin file (sidecar/CMakeLists.txt)"
#endif
#ifndef MP_SIDECAR_PLUGIN_RELDIR
#error "MP_SIDECAR_PLUGIN_RELDIR must be the plugin directory relative to the executable's (sidecar/CMakeLists.txt)"
#endif

namespace mp::sidecar {
namespace {

// The directory of the running executable (symlinks resolved, like $ORIGIN),
// or "" when it cannot be found out.
std::string executable_dir() {
    std::string path;
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        path.assign(buf, static_cast<size_t>(n));
    } else if (const char *fn = reinterpret_cast<const char *>(getauxval(AT_EXECFN))) {
        // No /proc (a minimal chroot): the path the program was started by.
        if (char *real = realpath(fn, nullptr)) {
            path = real;
            std::free(real);
        }
    }
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return "";
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string dl_error() {
    const char *e = dlerror();
    return e ? e : "unknown dlopen error";
}

// Finds, loads and checks the plugin; throws std::runtime_error explaining
// every attempt. The first existing file is the one used: a broken plugin
// next to the executable is reported rather than silently passed over.
const mp_skp_plugin_v1 *load_plugin() {
    std::vector<std::string> dirs;
    const char *env_dir = std::getenv(kPluginDirEnv);
    if (env_dir && *env_dir) {
        dirs.push_back(env_dir);  // an explicit choice: only there
    } else {
        std::string exe = executable_dir();
        if (!exe.empty()) {
            dirs.push_back(exe);
            dirs.push_back(exe + "/" + MP_SIDECAR_PLUGIN_RELDIR);
        }
    }
    std::string tried;
    for (const std::string &dir : dirs) {
        const std::string path = dir + "/" + MP_SIDECAR_KUBE_PLUGIN_FILE;
        if (access(path.c_str(), F_OK) != 0) {
            tried += "\n  " + path + ": " + std::strerror(errno);
            continue;
        }
        // RTLD_NOW: a missing symbol or library (libcurl) fails here, with a
        // clear message, not in the middle of a request. RTLD_LOCAL: the
        // plugin's symbols stay its own. The handle is never closed: the
        // backend's threads and libcurl/OpenSSL's exit handlers need the code
        // until the process ends.
        void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle)
            throw std::runtime_error("cannot load the Kubernetes backend plugin " + path + ": " + dl_error() +
                                     (tried.empty() ? "" : "\nnot found before it:" + tried));
        dlerror();
        auto entry = reinterpret_cast<mp_skp_entry_v1_fn>(dlsym(handle, MP_SKP_ENTRY_SYMBOL));
        if (!entry)
            throw std::runtime_error(path + " is not a Kubernetes backend plugin for this mp-sidecar (" + dl_error() +
                                     "); install the " MP_SIDECAR_KUBE_PLUGIN_FILE " built with mp-sidecar " +
                                     MP_VERSION_STRING);
        const mp_skp_plugin_v1 *plugin = entry();
        if (!plugin || plugin->abi_version != MP_SKP_ABI_VERSION || plugin->size < sizeof(mp_skp_plugin_v1))
            throw std::runtime_error(path + " has an incompatible plugin interface; install the " +
                                     MP_SIDECAR_KUBE_PLUGIN_FILE " built with mp-sidecar " + MP_VERSION_STRING);
        if (!plugin->build_version || std::strcmp(plugin->build_version, MP_VERSION_STRING) != 0)
            log::warn(path + " is from mp-sidecar " + (plugin->build_version ? plugin->build_version : "?") +
                      ", this is mp-sidecar " MP_VERSION_STRING "; install the plugin built with it");
        log::debug("loaded the Kubernetes backend plugin " + path);
        return plugin;
    }
    if (dirs.empty()) tried = "\n  (the directory of the executable is unknown: no /proc/self/exe)";
    throw std::runtime_error(std::string("cannot find the Kubernetes backend plugin " MP_SIDECAR_KUBE_PLUGIN_FILE
                                         "; tried:") +
                             tried + "\nInstall it next to mp-sidecar (or in " MP_SIDECAR_PLUGIN_RELDIR
                                     " relative to it), or set " +
                             kPluginDirEnv + " to its directory.");
}

const mp_skp_plugin_v1 &plugin() {
    static const mp_skp_plugin_v1 *p = load_plugin();  // a throw leaves it unset
    return *p;
}

// Collects what the plugin hands back during one call. The callbacks run in
// the plugin's frames, so they must not throw: an allocation failure is
// remembered and rethrown after the call returns.
struct Out {
    std::string text;
    std::vector<LockRecord> records;
    bool no_memory = false;
    mp_skp_out c{this, &Out::on_text, &Out::on_record};

    Out() = default;
    Out(const Out &) = delete;
    Out &operator=(const Out &) = delete;

    static void on_text(void *ctx, const char *t) noexcept {
        auto *o = static_cast<Out *>(ctx);
        try {
            o->text = t ? t : "";
        } catch (...) {
            o->no_memory = true;
        }
    }
    static void on_record(void *ctx, const mp_skp_record *r) noexcept {
        auto *o = static_cast<Out *>(ctx);
        try {
            LockRecord rec;
            rec.name = r->name;
            rec.owner = r->owner;
            rec.token = r->token;
            rec.ttl_seconds = r->ttl_seconds;
            rec.acquire_time = r->acquire_time;
            rec.renew_time = r->renew_time;
            rec.version = r->version;
            o->records.push_back(std::move(rec));
        } catch (...) {
            o->no_memory = true;
        }
    }

    // Turns a plugin status back into the Backend contract's exceptions.
    int check(int rc) {
        if (no_memory || rc == MP_SKP_NO_MEMORY) throw std::bad_alloc();
        if (rc == MP_SKP_ERROR) throw BackendError(text.empty() ? "the Kubernetes backend failed" : text);
        return rc;
    }
    // The single record of a successful get/create/update.
    LockRecord take_one() {
        if (records.size() != 1) throw BackendError("the Kubernetes backend plugin returned no record");
        return std::move(records.front());
    }
};

StoreResult store_result(int rc) {
    switch (rc) {
    case MP_SKP_OK: return StoreResult::Ok;
    case MP_SKP_NOT_FOUND: return StoreResult::NotFound;
    case MP_SKP_CONFLICT: return StoreResult::Conflict;
    }
    throw BackendError("the Kubernetes backend plugin returned an unknown status " + std::to_string(rc));
}

// A C view of `rec`, valid while `rec` lives.
mp_skp_record view(const LockRecord &rec) {
    return mp_skp_record{rec.name.c_str(), rec.owner.c_str(), rec.token, static_cast<int32_t>(rec.ttl_seconds),
                         rec.acquire_time.c_str(), rec.renew_time.c_str(), rec.version.c_str()};
}

void log_from_plugin(int32_t level, const char *message) noexcept {
    try {
        if (level < static_cast<int>(log::Level::Error)) level = static_cast<int>(log::Level::Error);
        if (level > static_cast<int>(log::Level::Debug)) level = static_cast<int>(log::Level::Debug);
        log::write(static_cast<log::Level>(level), message ? message : "");
    } catch (...) {
        // Out of memory while logging: the line is lost, the plugin carries on.
    }
}

// A Backend implemented by the plugin.
class PluginBackend final : public Backend {
public:
    PluginBackend(const mp_skp_plugin_v1 &api, mp_skp_backend *handle) : api_(api), handle_(handle) {}
    ~PluginBackend() override { api_.destroy(handle_); }
    PluginBackend(const PluginBackend &) = delete;
    PluginBackend &operator=(const PluginBackend &) = delete;

    std::string describe() const override {
        Out o;
        if (o.check(api_.describe(handle_, &o.c)) != MP_SKP_OK) return "Kubernetes";
        return o.text;
    }

    void start(std::function<void(const std::string &name)> on_change) override {
        on_change_ = std::move(on_change);
        Out o;
        o.check(api_.start(handle_, &PluginBackend::changed, this, &o.c));
    }

    void stop() override { api_.stop(handle_); }

    StoreResult get(const std::string &name, LockRecord *out) override {
        Out o;
        StoreResult r = store_result(o.check(api_.get(handle_, name.c_str(), &o.c)));
        if (r == StoreResult::Ok) *out = o.take_one();
        return r;
    }

    StoreResult create(LockRecord *rec) override {
        Out o;
        mp_skp_record in = view(*rec);
        StoreResult r = store_result(o.check(api_.create_record(handle_, &in, &o.c)));
        if (r == StoreResult::Ok) *rec = o.take_one();
        return r;
    }

    StoreResult update(LockRecord *rec) override {
        Out o;
        mp_skp_record in = view(*rec);
        StoreResult r = store_result(o.check(api_.update(handle_, &in, &o.c)));
        if (r == StoreResult::Ok) *rec = o.take_one();
        return r;
    }

    std::vector<LockRecord> list() override {
        Out o;
        o.check(api_.list(handle_, &o.c));
        return std::move(o.records);
    }

    bool ready(std::string *why) override {
        Out o;
        int rc = o.check(api_.ready(handle_, &o.c));
        if (rc == 1) return true;
        if (why) *why = o.text;
        return false;
    }

private:
    // on_change, called from the plugin's watch thread; must not unwind into it.
    static void changed(void *ctx, const char *name) noexcept {
        try {
            auto *self = static_cast<PluginBackend *>(ctx);
            if (self->on_change_) self->on_change_(name);
        } catch (const std::exception &e) {
            try {
                log::warn(std::string("change notification for '") + name + "' failed: " + e.what());
            } catch (...) {
            }
        } catch (...) {
        }
    }

    const mp_skp_plugin_v1 &api_;
    mp_skp_backend *handle_;
    std::function<void(const std::string &)> on_change_;
};

}  // namespace

std::unique_ptr<Backend> make_kube_backend(const std::string &kind, const KubeBackendOptions &opts) {
    const mp_skp_plugin_v1 &api = plugin();
    mp_skp_options o{opts.kubeconfig.c_str(), opts.context.c_str(), opts.namespace_.c_str(), opts.install_crd ? 1 : 0};
    Out err;
    mp_skp_backend *handle =
        api.create(kind.c_str(), &o, &log_from_plugin, static_cast<int32_t>(log::level()), &err.c);
    if (!handle) {
        if (err.no_memory) throw std::bad_alloc();
        throw std::runtime_error(err.text.empty() ? "the Kubernetes backend plugin could not create the backend"
                                                  : err.text);
    }
    try {
        return std::make_unique<PluginBackend>(api, handle);
    } catch (...) {
        api.destroy(handle);
        throw;
    }
}

}  // namespace mp::sidecar
