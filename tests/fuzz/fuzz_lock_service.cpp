// libFuzzer target: the lock-service state machine (sidecar/lock_service.cpp
// over the memory backend), driven by operations decoded from the input and
// checked against a model after every step:
//   - at most one holder per name; the service's view always matches the model;
//   - fencing tokens strictly increase per name with every new holder (also
//     across reclaimed records), and a renewal keeps the token;
//   - a release by a non-holder never frees the lock, one by the holder does;
//   - a release hands the lock to the oldest parked waiter (FIFO);
//   - closing a session frees exactly the holds tied to it;
//   - every parked waiter completes exactly once, an abandoned one never.
// Time plays no part: TTLs are long and waits either 0 or long, so the
// outcome depends on the input only (reclaim of free records, which runs on
// the service's timer thread, may happen at any time and must not matter).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lock_service.h"
#include "log.h"

namespace {

using namespace mp::sidecar;
using namespace std::chrono_literals;

constexpr int kNames = 3;
constexpr int kOwners = 4;
constexpr int kSessionSlots = 2;
constexpr int kTtl = 3600;  // nothing expires during one input

const char *const kNameStrings[kNames] = {"a", "b", "c"};
const char *const kOwnerStrings[kOwners] = {"w", "x", "y", "z"};

[[noreturn]] void violation(const std::string &what) {
    std::fprintf(stderr, "lock-service invariant violated: %s\n", what.c_str());
    std::abort();
}

// One parked (or inline-completed) acquire request.
struct Request {
    int name = 0;
    int owner = 0;
    std::string session;
    bool parked = false;     // acquire() returned an id
    uint64_t id = 0;
    bool abandoned = false;
    int completions = 0;
    std::optional<Result> result;
    uint64_t seq = 0;        // order of parking, for FIFO
};

struct Model {
    struct Name {
        int holder = -1;        // owner index, -1 = free
        uint64_t token = 0;     // the holder's token
        uint64_t max_token = 0; // largest token ever granted
        std::string session;    // the session the hold is tied to ("" = none)
    };
    Name names[kNames];
    std::string sessions[kSessionSlots];  // "" = slot not open
};

class Driver {
public:
    Driver(const uint8_t *data, size_t size) : data_(data), size_(size) {}

    void run() {
        const uint8_t cfg = next();
        backend_ = make_memory_backend(cfg & 2 ? 1 : 0, cfg & 4 ? 2 : 65536);
        ServiceOptions opts;
        opts.reclaim_after = cfg & 1 ? std::chrono::milliseconds(1) : std::chrono::milliseconds(0);
        service_ = std::make_unique<LockService>(*backend_, opts);
        service_->set_session_sink([](const std::string &, const std::string &) {});

        while (pos_ < size_) step();

        service_->begin_shutdown();
        drain();
        service_.reset();  // joins the timer thread
        drain();
        for (auto &r : requests_) {
            if (r->abandoned && r->completions > 0) violation("an abandoned waiter was completed");
            if (!r->abandoned && r->completions != 1)
                violation("a request completed " + std::to_string(r->completions) + " times");
        }
    }

private:
    uint8_t next() { return pos_ < size_ ? data_[pos_++] : 0; }

    void step() {
        const uint8_t op = next();
        const uint8_t a = next();
        const uint8_t b = next();
        const int name = a % kNames;
        const int owner = (a / kNames) % kOwners;
        switch (op % 8) {
        case 0:
            acquire(name, owner, session_for(b), (b & 8) != 0);
            break;
        case 1: {
            std::optional<uint64_t> token;
            const auto &st = model_.names[name];
            if (b % 3 == 1) token = st.token;
            if (b % 3 == 2) token = st.token + 1;
            release(name, owner, token);
            break;
        }
        case 2:
            create(name, owner);
            break;
        case 3:
            toggle_session(b % kSessionSlots);
            break;
        case 4:
            abandon(b);
            break;
        case 5:
            check_list();
            break;
        case 6:
            service_->notify_changed(kNameStrings[name]);
            service_->run_due_timers();
            break;
        case 7:  // renewal by the holder, to make them frequent
            if (model_.names[name].holder >= 0) acquire(name, model_.names[name].holder, session_for(b), false);
            break;
        }
        drain();
        check_all();
    }

    std::string session_for(uint8_t b) {
        int slot = (b >> 4) % (kSessionSlots + 1);
        return slot == kSessionSlots ? std::string() : model_.sessions[slot];
    }

    void acquire(int name, int owner, const std::string &session, bool wait) {
        auto req = std::make_shared<Request>();
        req->name = name;
        req->owner = owner;
        req->session = session;
        req->seq = ++seq_;
        requests_.push_back(req);
        AcquireRequest ar;
        ar.name = kNameStrings[name];
        ar.owner = kOwnerStrings[owner];
        ar.ttl_seconds = kTtl;
        ar.session = session;
        ar.wait = wait ? std::chrono::milliseconds(600000) : std::chrono::milliseconds(0);
        try {
            uint64_t id = service_->acquire(ar, [this, req](const Result &r) { complete(req, r); });
            if (id != 0) {
                req->parked = true;
                req->id = id;
            }
        } catch (const BackendError &) {
            // Inline failure (the memory backend's cap on names): nothing changed.
            req->completions = 1;
        }
    }

    void complete(const std::shared_ptr<Request> &req, const Result &r) {
        std::lock_guard<std::mutex> g(events_mu_);
        req->completions++;
        events_.emplace_back(req, r);
    }

    // Applies completions in the order they happened.
    void drain() {
        std::vector<std::pair<std::shared_ptr<Request>, Result>> events;
        {
            std::lock_guard<std::mutex> g(events_mu_);
            events.swap(events_);
        }
        for (auto &[req, r] : events) apply_acquire(*req, r);
    }

    void apply_acquire(Request &req, const Result &r) {
        if (req.abandoned) violation("an abandoned waiter was completed");
        req.result = r;
        auto &st = model_.names[req.name];
        const std::string who = std::string(kOwnerStrings[req.owner]) + " on " + kNameStrings[req.name];
        if (req.parked && r.outcome == Outcome::Acquired) {
            // FIFO: the oldest waiter still parked on this name gets it.
            for (auto &o : requests_)
                if (o.get() != &req && o->parked && !o->abandoned && o->name == req.name && !o->result &&
                    o->seq < req.seq)
                    violation("lock handed to " + who + " ahead of an older waiter " + kOwnerStrings[o->owner]);
        }
        if (r.outcome == Outcome::Acquired) {
            const uint64_t t = r.view.record.token;
            if (r.view.record.owner != kOwnerStrings[req.owner]) violation("acquired result names another owner: " + who);
            if (st.holder == req.owner) {
                if (t != st.token) violation("renewal changed the token: " + who);
                if (!req.session.empty()) st.session = session_open(req.session) ? req.session : "";
            } else {
                if (st.holder >= 0)
                    violation("two holders: " + who + " while " + kOwnerStrings[st.holder] + " holds it");
                if (t <= st.max_token)
                    violation("token did not increase: " + who + " got " + std::to_string(t) + " after " +
                              std::to_string(st.max_token));
                st.holder = req.owner;
                st.token = t;
                st.max_token = t;
                st.session = session_open(req.session) ? req.session : "";
            }
        } else if (r.outcome == Outcome::Conflict) {
            if (!req.parked && st.holder < 0 && !has_waiters(req.name))
                violation("a free lock was refused: " + who);
            if (st.holder == req.owner) violation("the holder's renewal was refused: " + who);
        }
    }

    bool has_waiters(int name) const {
        for (auto &o : requests_)
            if (o->parked && !o->abandoned && o->name == name && !o->result) return true;
        return false;
    }

    bool session_open(const std::string &s) const {
        if (s.empty()) return false;
        for (auto &x : model_.sessions)
            if (x == s) return true;
        return false;
    }

    void release(int name, int owner, std::optional<uint64_t> token) {
        auto &st = model_.names[name];
        const int holder_before = st.holder;
        const uint64_t token_before = st.token;
        Result r;
        try {
            r = service_->release(kNameStrings[name], kOwnerStrings[owner], token);
        } catch (const BackendError &e) {
            violation(std::string("release threw with the memory backend: ") + e.what());
        }
        const std::string who = std::string(kOwnerStrings[owner]) + " on " + kNameStrings[name];
        const bool by_holder = holder_before == owner && (!token || *token == token_before);
        switch (r.outcome) {
        case Outcome::Released:
            if (holder_before >= 0 && !by_holder) violation("a release by a non-holder freed the lock: " + who);
            if (holder_before >= 0) {
                st.holder = -1;
                st.session.clear();
            }
            break;
        case Outcome::Conflict:
            if (by_holder) violation("the holder could not release: " + who);
            if (holder_before < 0) violation("release of a free lock answered Conflict: " + who);
            break;
        case Outcome::NotFound:
            if (holder_before >= 0) violation("release of a held lock answered NotFound: " + who);
            break;
        default:
            violation("unexpected release outcome: " + who);
        }
    }

    void create(int name, int owner) {
        auto &st = model_.names[name];
        Result r;
        try {
            r = service_->create(kNameStrings[name], kOwnerStrings[owner], kTtl);
        } catch (const BackendError &) {
            return;  // the cap on names
        }
        if (r.outcome == Outcome::Acquired) {
            if (st.holder >= 0) violation(std::string("create succeeded on a held lock ") + kNameStrings[name]);
            if (r.view.record.token <= st.max_token) violation("create did not increase the token");
            st.holder = owner;
            st.token = st.max_token = r.view.record.token;
            st.session.clear();
        }
    }

    void toggle_session(int slot) {
        if (model_.sessions[slot].empty()) {
            model_.sessions[slot] = service_->open_session();
            if (model_.sessions[slot].empty()) violation("open_session returned an empty id");
            return;
        }
        const std::string id = model_.sessions[slot];
        int tied = 0;
        for (auto &st : model_.names)
            if (st.holder >= 0 && st.session == id) ++tied;
        int released = service_->close_session(id);
        model_.sessions[slot].clear();
        if (released != tied)
            violation("closing a session released " + std::to_string(released) + " holds, " +
                      std::to_string(tied) + " were tied to it");
        for (auto &st : model_.names)
            if (st.holder >= 0 && st.session == id) {
                st.holder = -1;
                st.session.clear();
            }
    }

    void abandon(uint8_t b) {
        std::vector<Request *> pending;
        for (auto &o : requests_)
            if (o->parked && !o->abandoned && !o->result) pending.push_back(o.get());
        if (pending.empty()) return;
        drain();  // a completion that already happened is not an abandonment
        Request *r = pending[b % pending.size()];
        if (r->result) return;
        std::lock_guard<std::mutex> g(events_mu_);
        if (r->completions > 0) return;  // completed meanwhile (not expected: no timeouts)
        r->abandoned = true;
        service_->abandon(r->id);
    }

    void check_all() {
        for (int n = 0; n < kNames; ++n) {
            const auto &st = model_.names[n];
            LockView v;
            bool exists = service_->get(kNameStrings[n], &v);
            if (st.holder >= 0) {
                if (!exists || !v.held || v.record.owner != kOwnerStrings[st.holder] || v.record.token != st.token)
                    violation(std::string("the service's view of ") + kNameStrings[n] + " (" +
                              (exists ? v.record.owner + " token " + std::to_string(v.record.token) : "absent") +
                              ") differs from the model (" + kOwnerStrings[st.holder] + " token " +
                              std::to_string(st.token) + ")");
            } else if (exists && (v.held || !v.record.owner.empty())) {
                violation(std::string("lock ") + kNameStrings[n] + " is held by " + v.record.owner +
                          " in the service but free in the model");
            }
        }
    }

    void check_list() {
        bool more = false;
        auto views = service_->list("", 100, &more);
        if (more) violation("list of 3 names says there are more");
        for (const auto &v : views) {
            int n = -1;
            for (int i = 0; i < kNames; ++i)
                if (v.record.name == kNameStrings[i]) n = i;
            if (n < 0) violation("list returned an unknown name: " + v.record.name);
            const auto &st = model_.names[n];
            if (v.held != (st.holder >= 0)) violation("list disagrees with the model on " + v.record.name);
        }
    }

    const uint8_t *data_;
    size_t size_;
    size_t pos_ = 0;
    uint64_t seq_ = 0;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<LockService> service_;
    Model model_;
    std::vector<std::shared_ptr<Request>> requests_;
    std::mutex events_mu_;
    std::vector<std::pair<std::shared_ptr<Request>, Result>> events_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const bool quiet = [] {
        log::set_level(log::Level::Error);
        return true;
    }();
    (void)quiet;
    if (size > 3 * 200) return -1;  // long inputs only slow the fuzzer down
    Driver(data, size).run();
    return 0;
}
