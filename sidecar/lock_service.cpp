#include "lock_service.h"

#include <algorithm>
#include <new>

#include "log.h"

namespace mp::sidecar {
namespace {

std::chrono::seconds ttl_of(const LockRecord &rec) { return std::chrono::seconds(std::max(rec.ttl_seconds, 0)); }

}  // namespace

LockService::LockService(Backend &backend) : backend_(backend) {}

template <typename Fn>
auto LockService::backend_call(Fn &&fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const BackendError &) {
        std::lock_guard<std::mutex> g(mu_);
        ++stats_.backend_errors;
        throw;
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &e) {
        // The contract says backends throw BackendError; anything else from
        // below (e.g. an HTTP client error) is still a backend failure.
        {
            std::lock_guard<std::mutex> g(mu_);
            ++stats_.backend_errors;
        }
        throw BackendError(e.what());
    }
}

MonoTime LockService::observe(const LockRecord &rec) {
    auto now = MonoClock::now();
    std::lock_guard<std::mutex> g(mu_);
    auto [it, inserted] = observed_.try_emplace(rec.name, Observed{rec.version, now});
    if (!inserted && it->second.version != rec.version) it->second = Observed{rec.version, now};
    // Someone else now holds (or freed) a lock we acquired: no longer ours to release.
    auto t = tracked_.find(rec.name);
    if (t != tracked_.end() && t->second.owner != rec.owner) tracked_.erase(t);
    return it->second.at;
}

void LockService::wrote(const LockRecord &rec) {
    auto now = MonoClock::now();
    std::lock_guard<std::mutex> g(mu_);
    // We made this version, so we know when it appeared (no later than now).
    observed_[rec.name] = Observed{rec.version, now};
    if (rec.owner.empty())
        tracked_.erase(rec.name);
    else
        tracked_[rec.name] = Tracked{rec.owner, now, rec.ttl_seconds};
}

void LockService::forget(const std::string &name) {
    std::lock_guard<std::mutex> g(mu_);
    observed_.erase(name);
    tracked_.erase(name);
}

bool LockService::held_now(const LockRecord &rec, MonoTime observed_at) const {
    return !rec.owner.empty() && MonoClock::now() - observed_at < ttl_of(rec);
}

LockService::Attempt LockService::try_acquire(const std::string &name, const std::string &owner, int ttl_seconds) {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
        LockRecord cur;
        StoreResult st = backend_call([&] { return backend_.get(name, &cur); });
        const std::string now = rfc3339_now();

        if (st == StoreResult::NotFound) {
            forget(name);
            LockRecord rec;
            rec.name = name;
            rec.owner = owner;
            rec.token = 1;
            rec.ttl_seconds = ttl_seconds;
            rec.acquire_time = rec.renew_time = now;
            if (backend_call([&] { return backend_.create(&rec); }) == StoreResult::Ok) {
                wrote(rec);
                {
                    std::lock_guard<std::mutex> g(mu_);
                    ++stats_.acquisitions;
                }
                log::debug("lock '" + name + "' created and acquired by '" + owner + "' (token 1)");
                return {{Outcome::Acquired, {rec, true}}, {}, true};
            }
            continue;  // someone created it first: look again
        }

        const MonoTime seen = observe(cur);
        if (cur.owner == owner) {
            // Renewal. This also covers an owner whose record outlived its TTL
            // without anyone taking it: it is still theirs, with the same token.
            LockRecord rec = cur;
            rec.ttl_seconds = ttl_seconds;
            rec.renew_time = now;
            if (backend_call([&] { return backend_.update(&rec); }) == StoreResult::Ok) {
                wrote(rec);
                std::lock_guard<std::mutex> g(mu_);
                ++stats_.renewals;
                return {{Outcome::Acquired, {rec, true}}, {}};
            }
            continue;
        }

        const bool free = cur.owner.empty();
        if (free || !held_now(cur, seen)) {
            LockRecord rec = cur;
            rec.owner = owner;
            rec.token = cur.token + 1;
            rec.ttl_seconds = ttl_seconds;
            rec.acquire_time = rec.renew_time = now;
            if (backend_call([&] { return backend_.update(&rec); }) == StoreResult::Ok) {
                wrote(rec);
                {
                    std::lock_guard<std::mutex> g(mu_);
                    ++stats_.acquisitions;
                    if (!free) ++stats_.takeovers;
                }
                if (!free)
                    log::info("lock '" + name + "': holder '" + cur.owner + "' did not renew within " +
                              std::to_string(cur.ttl_seconds) + " s; taken over by '" + owner + "' (token " +
                              std::to_string(rec.token) + ")");
                else
                    log::debug("lock '" + name + "' acquired by '" + owner + "' (token " + std::to_string(rec.token) +
                               ")");
                return {{Outcome::Acquired, {rec, true}}, {}, true};
            }
            continue;
        }

        return {{Outcome::Conflict, {cur, true}}, seen + ttl_of(cur)};
    }
    throw BackendError("lock '" + name + "' changed " + std::to_string(kMaxCasAttempts) +
                       " times while this request tried to acquire it; too much contention, try again");
}

Result LockService::acquire(const std::string &name, const std::string &owner, int ttl_seconds,
                            std::chrono::milliseconds wait, const std::function<bool()> &abandoned) {
    if (wait <= std::chrono::milliseconds::zero()) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (shutting_down_) return {Outcome::ShuttingDown, {}};
        }
        return give_back_if_abandoned(name, owner, try_acquire(name, owner, ttl_seconds), abandoned);
    }
    wait = std::min<std::chrono::milliseconds>(wait, kMaxWait);
    const MonoTime deadline = MonoClock::now() + wait;

    // Register before the first read so that no notification in between is missed.
    Waiters *w;
    {
        std::lock_guard<std::mutex> g(mu_);
        if (shutting_down_) return {Outcome::ShuttingDown, {}};
        auto &slot = waiters_[name];
        if (!slot) slot = std::make_unique<Waiters>();
        w = slot.get();
        ++w->count;
        ++stats_.waiters;
    }
    struct Unregister {
        LockService *self;
        const std::string &name;
        Waiters *w;
        ~Unregister() {
            std::lock_guard<std::mutex> g(self->mu_);
            --self->stats_.waiters;
            if (--w->count == 0) self->waiters_.erase(name);
        }
    } unregister{this, name, w};

    Result last;
    for (;;) {
        // Also before the first attempt: a request processed after its
        // client gave up must not be granted a lock nobody will renew.
        if (abandoned && abandoned()) return last;
        uint64_t generation;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (shutting_down_) return {Outcome::ShuttingDown, {}};
            generation = w->generation;
        }
        Attempt a = try_acquire(name, owner, ttl_seconds);
        if (a.result.outcome == Outcome::Acquired) return give_back_if_abandoned(name, owner, a, abandoned);
        if (a.result.outcome != Outcome::Conflict) return a.result;
        if (MonoClock::now() >= deadline) return a.result;
        last = a.result;

        // Sleep until something may have changed: a notification, the moment
        // the holder's record would expire unrenewed, or our deadline.
        const MonoTime wake_at = std::min(deadline, a.expires_at);
        std::unique_lock<std::mutex> lk(mu_);
        w->cv.wait_until(lk, wake_at, [&] { return w->generation != generation || shutting_down_; });
        if (shutting_down_) return {Outcome::ShuttingDown, {}};
    }
}

// The requester can hang up between the abandoned() check and the write
// that made it the holder (a preempted thread, a slow backend). So ask again
// once the hold is written. If it has gone, nobody will renew or release the
// hold: give it back now rather than block everyone for a TTL. If it hangs up
// after this check, it hung up after the grant, and the release the client
// library sends when it cancels comes later and frees the lock.
Result LockService::give_back_if_abandoned(const std::string &name, const std::string &owner, const Attempt &a,
                                           const std::function<bool()> &abandoned) {
    if (a.result.outcome != Outcome::Acquired || !a.changed_hands || !abandoned || !abandoned()) return a.result;
    const uint64_t token = a.result.view.record.token;
    log::info("lock '" + name + "': '" + owner + "' hung up as it was granted the lock (token " +
              std::to_string(token) + "); released it again");
    try {
        Result r = release_hold(name, owner, token);
        return {Outcome::Conflict, r.view};
    } catch (const BackendError &e) {
        // It stays held until its TTL runs out, as if the client had crashed.
        log::warn("lock '" + name + "': could not release the hold of '" + owner + "', who hung up: " + e.what());
        return {Outcome::Conflict, a.result.view};
    }
}

Result LockService::create(const std::string &name, const std::string &owner, int ttl_seconds) {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (shutting_down_) return {Outcome::ShuttingDown, {}};
    }
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
        LockRecord rec;
        rec.name = name;
        rec.owner = owner;
        rec.token = 1;
        rec.ttl_seconds = ttl_seconds;
        rec.acquire_time = rec.renew_time = rfc3339_now();
        if (backend_call([&] { return backend_.create(&rec); }) == StoreResult::Ok) {
            wrote(rec);
            std::lock_guard<std::mutex> g(mu_);
            ++stats_.acquisitions;
            return {Outcome::Acquired, {rec, true}};
        }
        LockRecord cur;
        if (backend_call([&] { return backend_.get(name, &cur); }) == StoreResult::Ok) {
            const MonoTime seen = observe(cur);
            return {Outcome::Conflict, {cur, held_now(cur, seen)}};
        }
        // Deleted between our create and get (possible with Kubernetes): try again.
    }
    throw BackendError("lock '" + name + "' kept appearing and disappearing while this request tried to create it");
}

Result LockService::release(const std::string &name, const std::string &owner) {
    return release_hold(name, owner, std::nullopt);
}

Result LockService::release_hold(const std::string &name, const std::string &owner, std::optional<uint64_t> token) {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
        LockRecord cur;
        if (backend_call([&] { return backend_.get(name, &cur); }) == StoreResult::NotFound) {
            forget(name);
            return {Outcome::NotFound, {}};
        }
        const MonoTime seen = observe(cur);
        if (cur.owner.empty()) return {Outcome::Released, {cur, false}};  // already free: idempotent
        if (cur.owner != owner || (token && cur.token != *token)) return {Outcome::Conflict, {cur, held_now(cur, seen)}};

        // Clear the holder but keep the record: its token counter must survive.
        LockRecord rec = cur;
        rec.owner.clear();
        rec.renew_time = rfc3339_now();
        if (backend_call([&] { return backend_.update(&rec); }) == StoreResult::Ok) {
            wrote(rec);
            std::lock_guard<std::mutex> g(mu_);
            ++stats_.releases;
            notify_locked(name);
            log::debug("lock '" + name + "' released by '" + owner + "'");
            return {Outcome::Released, {rec, false}};
        }
    }
    throw BackendError("lock '" + name + "' changed " + std::to_string(kMaxCasAttempts) +
                       " times while this request tried to release it; try again");
}

bool LockService::get(const std::string &name, LockView *out) {
    LockRecord cur;
    if (backend_call([&] { return backend_.get(name, &cur); }) == StoreResult::NotFound) {
        forget(name);
        return false;
    }
    const MonoTime seen = observe(cur);
    out->held = held_now(cur, seen);
    out->record = std::move(cur);
    return true;
}

std::vector<LockView> LockService::list() {
    std::vector<LockRecord> records = backend_call([&] { return backend_.list(); });
    std::vector<LockView> out;
    out.reserve(records.size());
    for (auto &rec : records) {
        const MonoTime seen = observe(rec);
        bool held = held_now(rec, seen);
        out.push_back({std::move(rec), held});
    }
    std::sort(out.begin(), out.end(),
              [](const LockView &a, const LockView &b) { return a.record.name < b.record.name; });
    return out;
}

void LockService::notify_locked(const std::string &name) {
    auto it = waiters_.find(name);
    if (it == waiters_.end()) return;  // nobody waiting: nothing to do
    ++it->second->generation;
    it->second->cv.notify_all();
}

void LockService::notify_changed(const std::string &name) {
    std::lock_guard<std::mutex> g(mu_);
    notify_locked(name);
}

void LockService::begin_shutdown() {
    std::lock_guard<std::mutex> g(mu_);
    shutting_down_ = true;
    for (auto &kv : waiters_) kv.second->cv.notify_all();
}

int LockService::release_all() {
    std::vector<std::pair<std::string, std::string>> mine;
    {
        std::lock_guard<std::mutex> g(mu_);
        for (const auto &kv : tracked_) mine.emplace_back(kv.first, kv.second.owner);
    }
    int released = 0;
    for (const auto &[name, owner] : mine) {
        try {
            Result r = release(name, owner);
            if (r.outcome == Outcome::Released) {
                ++released;
                log::info("released lock '" + name + "' held by '" + owner + "'");
            } else if (r.outcome == Outcome::Conflict) {
                log::debug("lock '" + name + "' is now held by '" + r.view.record.owner + "'; not releasing it");
            }
        } catch (const std::exception &e) {
            log::warn("could not release lock '" + name + "' held by '" + owner + "': " + e.what());
        }
    }
    return released;
}

ServiceStats LockService::stats() {
    auto now = MonoClock::now();
    std::lock_guard<std::mutex> g(mu_);
    ServiceStats s = stats_;
    s.locks_held = 0;
    for (const auto &kv : tracked_)
        if (now - kv.second.renewed_at < std::chrono::seconds(std::max(kv.second.ttl_seconds, 0))) ++s.locks_held;
    return s;
}

}  // namespace mp::sidecar
