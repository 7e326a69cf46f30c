// The C ABI of Sync: argument checking, option defaults, and translation of
// C++ results into MP_* codes. No logic lives here.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "common/names.h"
#include "sync/election.h"
#include "sync/lock.h"

using mp::Error;
using mp::guard;

struct mp_lock {
    std::unique_ptr<mp::sync::Lock> impl;
};

struct mp_election {
    std::unique_ptr<mp::sync::Election> impl;
};

namespace {

constexpr unsigned kMinTtl = 3;
constexpr unsigned kMaxTtl = 3600;

mp::sync::LockConfig make_config(const char *name, const char *sidecar, const char *owner, unsigned ttl) {
    if (!name) throw Error(MP_EINVAL, "name is NULL");
    std::string why = mp::validate_lock_name(name);
    if (!why.empty()) throw Error(MP_EINVAL, why);
    if (ttl != 0 && (ttl < kMinTtl || ttl > kMaxTtl))
        throw Error(MP_EINVAL, "ttl_seconds must be between " + std::to_string(kMinTtl) + " and " +
                                   std::to_string(kMaxTtl) + " (or 0 for the default of 15), not " +
                                   std::to_string(ttl));
    mp::sync::LockConfig cfg;
    cfg.name = name;
    cfg.owner = owner && *owner ? owner : mp::default_identity();
    cfg.sidecar_url = mp::sidecar_url(sidecar);
    cfg.ttl_seconds = ttl ? static_cast<int>(ttl) : 15;
    return cfg;
}

template <typename T>
T *need(T *p, const char *what) {
    if (!p) throw Error(MP_EINVAL, std::string(what) + " is NULL");
    return p;
}

}  // namespace

extern "C" {

int mp_lock_create(mp_lock **out, const char *name, const mp_lock_options *opts) {
    return guard([&] {
        need(out, "out");
        *out = nullptr;
        mp_lock_options defaults = MP_LOCK_OPTIONS_INIT;
        if (!opts) opts = &defaults;
        if (opts->version != MP_LOCK_OPTIONS_VERSION)
            throw Error(MP_EVERSION, "mp_lock_options.version " + std::to_string(opts->version) +
                                         " is not supported; initialise options with MP_LOCK_OPTIONS_INIT");
        auto cfg = make_config(name, opts->sidecar_url, opts->owner, opts->ttl_seconds);
        auto handle = std::make_unique<mp_lock>();
        mp::sync::Lock::Callback on_lost;
        if (opts->on_lost) {
            mp_lock_cb cb = opts->on_lost;
            void *ud = opts->user_data;
            mp_lock *raw = handle.get();
            on_lost = [cb, ud, raw] { cb(raw, ud); };
        }
        handle->impl = std::make_unique<mp::sync::Lock>(std::move(cfg), std::move(on_lost));
        *out = handle.release();
    });
}

void mp_lock_free(mp_lock *lock) {
    if (!lock) return;
    if (lock->impl && lock->impl->on_callback_thread()) {
        std::fprintf(stderr, "metaparticle: mp_lock_free() called from the lock's own callback; "
                             "the handle is leaked instead (free it from another thread)\n");
        return;
    }
    delete lock;
}

int mp_lock_acquire(mp_lock *lock, int timeout_ms) {
    return guard([&] {
        need(lock, "lock");
        if (!lock->impl->acquire(timeout_ms < 0 ? -1 : timeout_ms))
            throw Error(MP_ETIMEOUT, "lock '" + lock->impl->config().name + "' is held by someone else; gave up after " +
                                         std::to_string(timeout_ms) + " ms");
    });
}

int mp_lock_try_acquire(mp_lock *lock) {
    return guard([&] {
        need(lock, "lock");
        if (!lock->impl->acquire(0))
            throw Error(MP_EBUSY, "lock '" + lock->impl->config().name + "' is held by someone else");
    });
}

int mp_lock_lock_async(mp_lock *lock, mp_lock_cb on_acquired, void *user_data) {
    return guard([&] {
        need(lock, "lock");
        mp::sync::Lock::Callback cb;
        if (on_acquired) cb = [on_acquired, user_data, lock] { on_acquired(lock, user_data); };
        lock->impl->lock_async(std::move(cb));
    });
}

int mp_lock_release(mp_lock *lock) {
    return guard([&] {
        need(lock, "lock");
        std::string why;
        switch (lock->impl->release(&why)) {
        case mp::sync::Lock::Released::Released: break;
        case mp::sync::Lock::Released::NotHeld:
            throw Error(MP_ENOTHELD, "lock '" + lock->impl->config().name + "' is not held by this handle");
        case mp::sync::Lock::Released::Lost: throw Error(MP_ELOST, why);
        }
    });
}

int mp_lock_cancel(mp_lock *lock) {
    return guard([&] {
        need(lock, "lock");
        lock->impl->cancel();
    });
}

int mp_lock_is_held(mp_lock *lock, int *held) {
    return guard([&] {
        need(lock, "lock");
        need(held, "held");
        *held = lock->impl->held() ? 1 : 0;
    });
}

int mp_lock_token(mp_lock *lock, uint64_t *token) {
    return guard([&] {
        need(lock, "lock");
        need(token, "token");
        auto t = lock->impl->token();
        if (!t) throw Error(MP_ENOTHELD, "lock '" + lock->impl->config().name + "' is not held by this handle");
        *token = *t;
    });
}

const char *mp_lock_name(mp_lock *lock) { return lock ? lock->impl->config().name.c_str() : ""; }
const char *mp_lock_owner(mp_lock *lock) { return lock ? lock->impl->config().owner.c_str() : ""; }

int mp_election_create(mp_election **out, const char *name, const mp_election_options *opts) {
    return guard([&] {
        need(out, "out");
        *out = nullptr;
        mp_election_options defaults = MP_ELECTION_OPTIONS_INIT;
        if (!opts) opts = &defaults;
        if (opts->version != MP_ELECTION_OPTIONS_VERSION)
            throw Error(MP_EVERSION, "mp_election_options.version " + std::to_string(opts->version) +
                                         " is not supported; initialise options with MP_ELECTION_OPTIONS_INIT");
        auto cfg = make_config(name, opts->sidecar_url, opts->identity, opts->ttl_seconds);
        auto handle = std::make_unique<mp_election>();
        mp_election *raw = handle.get();
        void *ud = opts->user_data;
        mp::sync::Election::Callback on_leader, on_lost;
        if (opts->on_leader) on_leader = [cb = opts->on_leader, raw, ud] { cb(raw, ud); };
        if (opts->on_lost) on_lost = [cb = opts->on_lost, raw, ud] { cb(raw, ud); };
        handle->impl = std::make_unique<mp::sync::Election>(std::move(cfg), std::move(on_leader), std::move(on_lost));
        *out = handle.release();
    });
}

void mp_election_free(mp_election *election) { delete election; }

int mp_election_run(mp_election *election) {
    return guard([&] {
        need(election, "election");
        election->impl->run();
    });
}

int mp_election_stop(mp_election *election) {
    return guard([&] {
        need(election, "election");
        election->impl->stop();
    });
}

int mp_election_is_leader(mp_election *election, int *is_leader) {
    return guard([&] {
        need(election, "election");
        need(is_leader, "is_leader");
        *is_leader = election->impl->is_leader() ? 1 : 0;
    });
}

const char *mp_election_identity(mp_election *election) {
    return election ? election->impl->identity().c_str() : "";
}

int mp_election_leader(mp_election *election, char **out) {
    return guard([&] {
        need(election, "election");
        need(out, "out");
        *out = nullptr;
        auto who = election->impl->leader();
        if (!who) return;
        *out = static_cast<char *>(std::malloc(who->size() + 1));
        if (!*out) throw std::bad_alloc();
        std::memcpy(*out, who->c_str(), who->size() + 1);
    });
}

}  // extern "C"
