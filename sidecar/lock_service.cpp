#include "lock_service.h"

#include <malloc.h>
#include <sys/random.h>

#include <algorithm>
#include <cstdio>
#include <new>

#include "json/json.h"
#include "log.h"

namespace mp::sidecar {
namespace {

std::chrono::seconds ttl_of(const LockRecord &rec) { return std::chrono::seconds(std::max(rec.ttl_seconds, 0)); }

}  // namespace

std::string random_hex_id(size_t bytes) {
    // getrandom(2), not OpenSSL: initialising libcrypto's RNG would touch
    // ~3 MB of its pages in a memory-backend sidecar that never needs TLS.
    std::vector<unsigned char> raw(bytes);
    if (getrandom(raw.data(), raw.size(), 0) != static_cast<ssize_t>(raw.size()))
        throw std::runtime_error("cannot read random bytes for an id (getrandom)");
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : raw) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

LockService::LockService(Backend &backend, ServiceOptions options) : backend_(backend), opts_(options) {
    timer_ = std::thread([this] { timer_main(); });
    if (opts_.grace_until > MonoClock::now()) {
        std::lock_guard<std::mutex> g(mu_);
        add_timer_locked(opts_.grace_until, std::string());  // "" = no lock: the grace period ends
    }
}

LockService::~LockService() {
    {
        std::lock_guard<std::mutex> g(mu_);
        stop_timer_ = true;
    }
    timer_cv_.notify_all();
    if (timer_.joinable()) timer_.join();
}

void LockService::set_session_sink(SessionSink sink) { session_sink_ = std::move(sink); }
void LockService::set_grant_hook(GrantHook hook) { grant_hook_ = std::move(hook); }

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
    // Someone else now holds (or freed) a lock we granted: no longer a hold of ours.
    auto h = holds_.find(rec.name);
    if (h != holds_.end() && (h->second.owner != rec.owner || h->second.token != rec.token)) holds_.erase(h);
    return it->second.at;
}

void LockService::wrote(const LockRecord &rec, const std::string &session) {
    auto now = MonoClock::now();
    std::lock_guard<std::mutex> g(mu_);
    // We made this version, so we know when it appeared (no later than now).
    observed_[rec.name] = Observed{rec.version, now};
    if (rec.owner.empty()) {
        holds_.erase(rec.name);
        if (opts_.reclaim_after.count() > 0) {
            released_[rec.name] = now;
            add_timer_locked(now + opts_.reclaim_after, rec.name);
        }
        return;
    }
    released_.erase(rec.name);
    Hold &h = holds_[rec.name];
    // A new hold (handover, takeover) starts untied: the previous holder's
    // session must never release it. A renewal without a session keeps its
    // tie (original clients never name one); naming a session moves it.
    const bool new_hold = h.owner != rec.owner || h.token != rec.token;
    h.owner = rec.owner;
    h.token = rec.token;
    h.renewed_at = now;
    h.ttl_seconds = rec.ttl_seconds;
    if (new_hold) h.session.clear();
    if (!session.empty()) h.session = sessions_.count(session) ? session : std::string();
}

void LockService::forget(const std::string &name) {
    std::lock_guard<std::mutex> g(mu_);
    observed_.erase(name);
    holds_.erase(name);
    released_.erase(name);
}

bool LockService::held_now(const LockRecord &rec, MonoTime observed_at) const {
    return !rec.owner.empty() && MonoClock::now() - observed_at < ttl_of(rec);
}

LockView LockService::view_of(const LockRecord &rec, bool held) {
    LockView v{rec, held, {}};
    std::lock_guard<std::mutex> g(mu_);
    auto h = holds_.find(rec.name);
    if (h != holds_.end() && h->second.owner == rec.owner && h->second.token == rec.token) v.session = h->second.session;
    return v;
}

void LockService::session_event(const std::string &session, const std::string &json) {
    if (session_sink_ && !session.empty()) session_sink_(session, json);
}

bool LockService::write_new_hold(const AcquireRequest &req, const LockRecord *cur, bool exists, LockRecord *out) {
    LockRecord rec;
    if (cur) rec = *cur;
    rec.name = req.name;
    rec.owner = req.owner;
    rec.token = backend_.next_token(cur ? cur->token : 0);
    rec.ttl_seconds = req.ttl_seconds;
    rec.acquire_time = rec.renew_time = rfc3339_now();
    if (grant_hook_) grant_hook_(rec);  // before anyone can learn of the grant
    StoreResult st = exists ? backend_call([&] { return backend_.update(&rec); })
                            : backend_call([&] { return backend_.create(&rec); });
    if (st != StoreResult::Ok) return false;
    wrote(rec, req.session);
    *out = rec;
    return true;
}

LockService::Attempt LockService::try_acquire(const AcquireRequest &req) {
    if (MonoClock::now() < opts_.grace_until) {
        Attempt a;
        a.result.outcome = Outcome::Recovering;
        a.result.view.record.name = req.name;
        a.result.view.held = true;
        a.expires_at = opts_.grace_until;
        return a;
    }
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
        LockRecord cur;
        StoreResult st = backend_call([&] { return backend_.get(req.name, &cur); });

        if (st == StoreResult::NotFound) {
            forget(req.name);
            LockRecord rec;
            if (!write_new_hold(req, nullptr, false, &rec)) continue;  // someone created it first
            std::lock_guard<std::mutex> g(mu_);
            ++stats_.acquisitions;
            log::debug("lock '" + req.name + "' created and acquired by '" + req.owner + "' (token " +
                       std::to_string(rec.token) + ")");
            return {{Outcome::Acquired, {rec, true, holds_[req.name].session}}, {}, true};
        }

        // The session that held this lock through us, if any, is told when it is taken over.
        std::string old_session;
        {
            std::lock_guard<std::mutex> g(mu_);
            auto h = holds_.find(req.name);
            if (h != holds_.end() && h->second.owner == cur.owner && h->second.token == cur.token)
                old_session = h->second.session;
        }
        const MonoTime seen = observe(cur);
        if (cur.owner == req.owner) {
            // Renewal. This also covers an owner whose record outlived its TTL
            // without anyone taking it: it is still theirs, with the same token.
            LockRecord rec = cur;
            rec.ttl_seconds = req.ttl_seconds;
            rec.renew_time = rfc3339_now();
            if (backend_call([&] { return backend_.update(&rec); }) != StoreResult::Ok) continue;
            wrote(rec, req.session);
            std::lock_guard<std::mutex> g(mu_);
            ++stats_.renewals;
            return {{Outcome::Acquired, {rec, true, holds_[req.name].session}}, {}};
        }

        const bool free = cur.owner.empty();
        if (free || !held_now(cur, seen)) {
            LockRecord rec;
            if (!write_new_hold(req, &cur, true, &rec)) continue;
            std::string session;
            {
                std::lock_guard<std::mutex> g(mu_);
                ++stats_.acquisitions;
                if (!free) ++stats_.takeovers;
                session = holds_[req.name].session;
            }
            if (!free) {
                log::info("lock '" + req.name + "': holder '" + cur.owner + "' did not renew within " +
                          std::to_string(cur.ttl_seconds) + " s; taken over by '" + req.owner + "' (token " +
                          std::to_string(rec.token) + ")");
                auto ev = json::object();
                json::set_string(ev.get(), "type", "lost");
                json::set_string(ev.get(), "name", req.name);
                json::set_string(ev.get(), "owner", cur.owner);
                json::set_int(ev.get(), "token", static_cast<int64_t>(cur.token));
                json::set_string(ev.get(), "reason", "not renewed within its TTL; taken over");
                session_event(old_session, json::print(ev.get()));
            } else {
                log::debug("lock '" + req.name + "' acquired by '" + req.owner + "' (token " +
                           std::to_string(rec.token) + ")");
            }
            return {{Outcome::Acquired, {rec, true, session}}, {}, true};
        }

        return {{Outcome::Conflict, view_of(cur, true)}, seen + ttl_of(cur)};
    }
    throw BackendError("lock '" + req.name + "' changed " + std::to_string(kMaxCasAttempts) +
                       " times while this request tried to acquire it; too much contention, try again");
}

uint64_t LockService::acquire(const AcquireRequest &req_in, Completion done) {
    AcquireRequest req = req_in;
    req.wait = std::clamp<std::chrono::milliseconds>(req.wait, std::chrono::milliseconds::zero(), kMaxWait);
    bool queued_ahead = false;
    {
        std::lock_guard<std::mutex> g(mu_);
        if (!shutting_down_) {
            auto q = queues_.find(req.name);
            queued_ahead = q != queues_.end() && !q->second.waiters.empty();
        }
    }
    if (shutting_down()) {
        done({Outcome::ShuttingDown, {}});
        return 0;
    }
    Attempt a;
    if (queued_ahead) {
        // FIFO: a new contender does not overtake the waiters. A renewal of
        // the current holder must still go through, so look first.
        LockRecord cur;
        bool mine = backend_call([&] { return backend_.get(req.name, &cur); }) == StoreResult::Ok &&
                    cur.owner == req.owner;
        if (mine) {
            a = try_acquire(req);
        } else {
            std::lock_guard<std::mutex> g(mu_);
            a.result = {Outcome::Conflict, queues_[req.name].last};
            if (a.result.view.record.name.empty()) a.result.view.record.name = req.name;
            a.expires_at = MonoClock::now() + req.wait;
        }
    } else {
        a = try_acquire(req);
    }
    const bool can_wait = a.result.outcome == Outcome::Conflict || a.result.outcome == Outcome::Recovering;
    if (!can_wait || req.wait.count() == 0) {
        done(a.result);
        return 0;
    }

    auto w = std::make_shared<Waiter>();
    w->req = req;
    w->deadline = MonoClock::now() + req.wait;
    w->done = std::move(done);
    {
        std::unique_lock<std::mutex> lk(mu_);
        if (shutting_down_) {
            lk.unlock();
            w->done({Outcome::ShuttingDown, {}});
            return 0;
        }
        w->id = next_waiter_++;
        Queue &q = queues_[req.name];
        w->pos = q.waiters.insert(q.waiters.end(), w);
        if (a.result.outcome == Outcome::Conflict) q.last = a.result.view;
        waiters_by_id_[w->id] = w;
        ++stats_.waiters;
        add_timer_locked(w->deadline, req.name);
        if (!queued_ahead) add_timer_locked(a.expires_at, req.name);
    }
    // The lock may have been released between the attempt and the parking,
    // by a release that saw no waiter yet: look once more.
    if (!queued_ahead) grant_head(req.name);
    return w->id;
}

void LockService::add_timer_locked(MonoTime at, const std::string &name) {
    const bool earliest = timers_.empty() || at < timers_.begin()->first;
    timers_.emplace(at, name);
    if (earliest) timer_cv_.notify_all();
}

bool LockService::unpark_locked(const std::shared_ptr<Waiter> &w) {
    if (waiters_by_id_.erase(w->id) == 0) return false;
    auto q = queues_.find(w->req.name);
    if (q != queues_.end()) {
        q->second.waiters.erase(w->pos);
        if (q->second.waiters.empty() && !q->second.granting) queues_.erase(q);
    }
    --stats_.waiters;
    return true;
}

void LockService::abandon(uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = waiters_by_id_.find(id);
    if (it == waiters_by_id_.end()) return;
    unpark_locked(std::shared_ptr<Waiter>(it->second));
}

// Try to give the lock to the first waiter. One thread at a time per name;
// a call while another runs makes that one look again when it is done.
void LockService::grant_head(const std::string &name) {
    {
        std::lock_guard<std::mutex> g(mu_);
        auto q = queues_.find(name);
        if (q == queues_.end() || q->second.waiters.empty()) return;
        if (q->second.granting) {
            q->second.again = true;
            return;
        }
        q->second.granting = true;
        q->second.again = false;
    }
    for (;;) {
        std::shared_ptr<Waiter> w;
        {
            std::lock_guard<std::mutex> g(mu_);
            auto q = queues_.find(name);
            if (shutting_down_ || q == queues_.end() || q->second.waiters.empty()) {
                if (q != queues_.end()) {
                    q->second.granting = false;
                    if (q->second.waiters.empty()) queues_.erase(q);
                }
                return;
            }
            w = q->second.waiters.front();
            q->second.again = false;
        }
        Attempt a;
        try {
            a = try_acquire(w->req);
        } catch (const std::exception &e) {
            // Keep everyone parked and look again in a second.
            log::warn("lock '" + name + "': cannot hand it to a waiter now: " + e.what());
            std::lock_guard<std::mutex> g(mu_);
            auto q = queues_.find(name);
            if (q != queues_.end()) {
                q->second.granting = false;
                if (q->second.waiters.empty()) queues_.erase(q);
            }
            add_timer_locked(MonoClock::now() + std::chrono::seconds(1), name);
            return;
        }
        if (a.result.outcome == Outcome::Acquired) {
            bool abandoned;
            {
                std::lock_guard<std::mutex> g(mu_);
                Queue &q = queues_[name];
                q.granting = false;
                abandoned = !unpark_locked(w);  // also drops the queue when it is now empty
                auto left = queues_.find(name);
                if (left != queues_.end() && left->second.waiters.empty()) queues_.erase(left);
            }
            if (abandoned) {
                // Its requester left while we wrote the hold: give it back
                // (that hold only), which hands it to the next waiter.
                log::debug("lock '" + name + "': waiter '" + w->req.owner + "' left as it was granted; released");
                try {
                    release_hold(name, w->req.owner, a.result.view.record.token, false);
                } catch (const std::exception &e) {
                    log::warn("lock '" + name + "': could not release the hold of a waiter that left: " + e.what());
                }
                return;
            }
            w->done(a.result);
            return;
        }
        std::lock_guard<std::mutex> g(mu_);
        Queue &q = queues_[name];
        if (a.result.outcome == Outcome::Conflict) q.last = a.result.view;
        add_timer_locked(a.expires_at, name);
        if (!q.again) {
            q.granting = false;
            if (q.waiters.empty()) queues_.erase(name);
            return;
        }
    }
}

Result LockService::create(const std::string &name, const std::string &owner, int ttl_seconds) {
    if (shutting_down()) return {Outcome::ShuttingDown, {}};
    if (MonoClock::now() < opts_.grace_until) {
        Result r{Outcome::Recovering, {}};
        r.view.record.name = name;
        return r;
    }
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
        AcquireRequest req{name, owner, ttl_seconds, {}, {}};
        LockRecord rec;
        if (write_new_hold(req, nullptr, false, &rec)) {
            std::lock_guard<std::mutex> g(mu_);
            ++stats_.acquisitions;
            return {Outcome::Acquired, {rec, true, {}}};
        }
        LockRecord cur;
        if (backend_call([&] { return backend_.get(name, &cur); }) == StoreResult::Ok) {
            const MonoTime seen = observe(cur);
            return {Outcome::Conflict, view_of(cur, held_now(cur, seen))};
        }
        // Deleted between our create and get (possible with Kubernetes): try again.
    }
    throw BackendError("lock '" + name + "' kept appearing and disappearing while this request tried to create it");
}

Result LockService::release(const std::string &name, const std::string &owner, std::optional<uint64_t> token) {
    return release_hold(name, owner, token, false);
}

Result LockService::release_hold(const std::string &name, const std::string &owner, std::optional<uint64_t> token,
                                 bool by_session) {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
        LockRecord cur;
        if (backend_call([&] { return backend_.get(name, &cur); }) == StoreResult::NotFound) {
            forget(name);
            return {Outcome::NotFound, {}};
        }
        const MonoTime seen = observe(cur);
        if (cur.owner.empty()) return {Outcome::Released, {cur, false, {}}};  // already free: idempotent
        if (cur.owner != owner || (token && cur.token != *token))
            return {Outcome::Conflict, view_of(cur, held_now(cur, seen))};

        // Hand it straight to the first waiter (one write, one wake-up), unless
        // another thread is granting this name right now: then free it and
        // let that thread look again.
        std::shared_ptr<Waiter> next;
        {
            std::lock_guard<std::mutex> g(mu_);
            auto q = queues_.find(name);
            if (q != queues_.end() && !q->second.waiters.empty() && !shutting_down_ &&
                MonoClock::now() >= opts_.grace_until) {
                if (q->second.granting) {
                    q->second.again = true;
                } else {
                    q->second.granting = true;
                    next = q->second.waiters.front();
                }
            }
        }
        LockRecord rec = cur;
        bool ok;
        try {
            if (next) {
                ok = write_new_hold(next->req, &cur, true, &rec);
            } else {
                rec.owner.clear();
                rec.renew_time = rfc3339_now();
                ok = backend_call([&] { return backend_.update(&rec); }) == StoreResult::Ok;
                if (ok) wrote(rec, {});
            }
        } catch (...) {
            if (next) {
                std::lock_guard<std::mutex> g(mu_);
                queues_[name].granting = false;
            }
            throw;
        }
        bool next_left = false;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (ok) {
                ++stats_.releases;
                if (by_session) ++stats_.session_releases;
            }
            if (next) {
                Queue &q = queues_[name];
                q.granting = false;
                if (ok) {
                    ++stats_.acquisitions;
                    ++stats_.handovers;
                    next_left = !unpark_locked(next);
                }
                auto left = queues_.find(name);
                if (left != queues_.end() && left->second.waiters.empty()) queues_.erase(left);
            }
        }
        if (!ok) continue;
        log::debug("lock '" + name + "' released by '" + owner + "'" +
                   (next ? " and handed to '" + next->req.owner + "' (token " + std::to_string(rec.token) + ")"
                         : std::string()));
        if (next) {
            if (next_left) {
                release_hold(name, next->req.owner, rec.token, false);
            } else {
                std::string session;
                {
                    std::lock_guard<std::mutex> g(mu_);
                    session = holds_[name].session;
                }
                next->done({Outcome::Acquired, {rec, true, session}});
            }
        } else {
            grant_head(name);  // a waiter parked meanwhile, or a grant asked to look again
        }
        // Clients see the lock as this release left it for them: free.
        LockRecord freed = rec;
        if (next) {
            freed = cur;
            freed.owner.clear();
            freed.renew_time = rec.renew_time;
        }
        return {Outcome::Released, {freed, false, {}}};
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
    *out = view_of(cur, held_now(cur, seen));
    return true;
}

std::vector<LockView> LockService::list(const std::string &after, size_t limit, bool *more) {
    std::vector<LockRecord> records = backend_call([&] { return backend_.list(); });
    std::sort(records.begin(), records.end(),
              [](const LockRecord &a, const LockRecord &b) { return a.name < b.name; });
    auto it = std::upper_bound(records.begin(), records.end(), after,
                               [](const std::string &n, const LockRecord &r) { return n < r.name; });
    std::vector<LockView> out;
    *more = false;
    for (; it != records.end(); ++it) {
        if (out.size() == limit) {
            *more = true;
            break;
        }
        const MonoTime seen = observe(*it);
        out.push_back(view_of(*it, held_now(*it, seen)));
    }
    return out;
}

std::string LockService::open_session() {
    std::string id = random_hex_id(16);
    std::lock_guard<std::mutex> g(mu_);
    sessions_.insert(id);
    ++stats_.sessions;
    return id;
}

int LockService::close_session(const std::string &id) {
    std::vector<std::pair<std::string, Hold>> tied;
    {
        std::lock_guard<std::mutex> g(mu_);
        if (sessions_.erase(id)) --stats_.sessions;
        for (const auto &[name, h] : holds_)
            if (h.session == id) tied.emplace_back(name, h);
    }
    int released = 0;
    for (const auto &[name, h] : tied) {
        try {
            Result r = release_hold(name, h.owner, h.token, true);
            if (r.outcome == Outcome::Released) {
                ++released;
                log::debug("lock '" + name + "' released: the session of '" + h.owner + "' closed");
            }
        } catch (const std::exception &e) {
            // It stays held until its TTL runs out, as if no session existed.
            log::warn("lock '" + name + "': could not release it for the closed session of '" + h.owner +
                      "': " + e.what());
        }
    }
    return released;
}

std::vector<std::string> LockService::sessions() {
    std::lock_guard<std::mutex> g(mu_);
    return {sessions_.begin(), sessions_.end()};
}

size_t LockService::holds_tied(const std::string &session) {
    std::lock_guard<std::mutex> g(mu_);
    return std::count_if(holds_.begin(), holds_.end(), [&](const auto &kv) { return kv.second.session == session; });
}

size_t LockService::holds_untied() {
    auto now = MonoClock::now();
    std::lock_guard<std::mutex> g(mu_);
    return std::count_if(holds_.begin(), holds_.end(), [&](const auto &kv) {
        return kv.second.session.empty() && now - kv.second.renewed_at < std::chrono::seconds(kv.second.ttl_seconds);
    });
}

void LockService::notify_changed(const std::string &name) {
    std::lock_guard<std::mutex> g(mu_);
    if (!queues_.count(name)) return;  // nobody waiting: nothing to do
    add_timer_locked(MonoClock::now(), name);
}

void LockService::begin_shutdown() {
    std::vector<std::shared_ptr<Waiter>> all;
    {
        std::lock_guard<std::mutex> g(mu_);
        shutting_down_ = true;
        for (auto &[name, q] : queues_)
            for (auto &w : q.waiters) all.push_back(w);
        queues_.clear();
        stats_.waiters -= waiters_by_id_.size();
        waiters_by_id_.clear();
    }
    for (auto &w : all) w->done({Outcome::ShuttingDown, {}});
}

bool LockService::shutting_down() {
    std::lock_guard<std::mutex> g(mu_);
    return shutting_down_;
}

void LockService::timer_main() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_timer_) {
        if (timers_.empty()) {
            timer_cv_.wait(lk);
            continue;
        }
        // A copy: wait_until reads the deadline again after waking, when
        // another thread may have erased that timer (found by fuzz_lock_service).
        const MonoTime next = timers_.begin()->first;
        if (next > MonoClock::now()) {
            timer_cv_.wait_until(lk, next);
            continue;
        }
        lk.unlock();
        try {
            run_due_timers();
        } catch (const std::exception &e) {
            log::warn(std::string("lock timers: ") + e.what());
        }
        lk.lock();
    }
}

void LockService::run_due_timers() {
    const auto now = MonoClock::now();
    std::set<std::string> names;
    std::vector<std::pair<std::shared_ptr<Waiter>, LockView>> expired;
    std::vector<std::pair<std::string, MonoTime>> reclaim;
    {
        std::lock_guard<std::mutex> g(mu_);
        while (!timers_.empty() && timers_.begin()->first <= now) {
            names.insert(timers_.begin()->second);
            timers_.erase(timers_.begin());
        }
        for (const auto &name : names) {
            auto q = queues_.find(name);
            if (q != queues_.end()) {
                // Waiters whose own deadline passed answer 409 with the holder.
                auto &ws = q->second.waiters;
                for (auto it = ws.begin(); it != ws.end();) {
                    if ((*it)->deadline <= now) {
                        LockView v = q->second.last;
                        if (v.record.name.empty()) v.record.name = name;
                        expired.emplace_back(*it, v);
                        waiters_by_id_.erase((*it)->id);
                        --stats_.waiters;
                        it = ws.erase(it);
                    } else {
                        ++it;
                    }
                }
                if (ws.empty() && !q->second.granting) queues_.erase(q);
            }
            auto r = released_.find(name);
            if (r != released_.end() && now - r->second >= opts_.reclaim_after && !queues_.count(name))
                reclaim.emplace_back(name, r->second);
        }
    }
    for (auto &[w, v] : expired) w->done({Outcome::Conflict, v});
    // clang 14 cannot capture a structured binding (C++20): name it for the lambda.
    size_t reclaimed = 0;
    for (const auto &[name, at] : reclaim) {
        LockRecord cur;
        if (backend_call([&, &n = name] { return backend_.get(n, &cur); }) != StoreResult::Ok || !cur.owner.empty()) continue;
        if (backend_.reclaim(cur)) {
            ++reclaimed;
            std::lock_guard<std::mutex> g(mu_);
            auto r = released_.find(name);
            if (r != released_.end() && r->second == at) {
                released_.erase(r);
                observed_.erase(name);
            }
        }
    }
    // Give the freed pages back to the system after a batch of reclaims, so
    // the footprint returns near idle (glibc would keep them).
    if (reclaimed >= 64) malloc_trim(0);
    for (const auto &name : names)
        if (!name.empty()) grant_head(name);
    if (names.count(std::string())) {
        // The restart grace period ended: every queue may go now.
        std::vector<std::string> all;
        {
            std::lock_guard<std::mutex> g(mu_);
            for (const auto &kv : queues_) all.push_back(kv.first);
        }
        for (const auto &name : all) grant_head(name);
    }
}

ServiceStats LockService::stats() {
    auto now = MonoClock::now();
    std::lock_guard<std::mutex> g(mu_);
    ServiceStats s = stats_;
    s.locks_held = 0;
    for (const auto &kv : holds_)
        if (now - kv.second.renewed_at < std::chrono::seconds(std::max(kv.second.ttl_seconds, 0))) ++s.locks_held;
    return s;
}

}  // namespace mp::sidecar
