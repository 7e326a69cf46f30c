// Unit tests of the sidecar's LockService over the memory backend, for rules
// the HTTP tests cannot time precisely: FIFO handover with one wake-up per
// release, waiters that leave, sessions, restart epochs and grace periods,
// reclaiming released records. Usage: lock_service_test
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "lock_service.h"

#include "check.h"

using namespace mp::sidecar;
using namespace std::chrono_literals;

namespace {

struct Fixture {
    std::unique_ptr<Backend> backend;
    LockService service;
    explicit Fixture(ServiceOptions o = {}, uint64_t epoch = 0)
        : backend(make_memory_backend(epoch)), service(*backend, o) {}

    Result now(const std::string &name, const std::string &owner, const std::string &session = {}) {
        Result out;
        int calls = 0;
        uint64_t id = service.acquire({name, owner, 30, session, 0ms}, [&](const Result &r) {
            out = r;
            ++calls;
        });
        CHECK(id == 0);
        CHECK(calls == 1);
        return out;
    }
    LockView view(const std::string &name) {
        LockView v;
        CHECK(service.get(name, &v));
        return v;
    }
};

// A parked waiter: counts its completions and keeps the last result.
struct Waiter {
    std::atomic<int> calls{0};
    std::promise<Result> result;
    uint64_t id = 0;
    void park(LockService &s, const std::string &name, const std::string &owner,
              std::chrono::milliseconds wait = 10s, const std::string &session = {}) {
        id = s.acquire({name, owner, 30, session, wait}, [this](const Result &r) {
            if (calls++ == 0) result.set_value(r);
        });
    }
    Result get() {
        auto f = result.get_future();
        CHECK(f.wait_for(5s) == std::future_status::ready);
        return f.get();
    }
};

void release_hands_over_in_fifo_order_one_wakeup_each() {
    Fixture f;
    CHECK(f.now("l", "holder").outcome == Outcome::Acquired);
    std::vector<std::unique_ptr<Waiter>> ws;
    for (int i = 0; i < 50; ++i) {
        ws.push_back(std::make_unique<Waiter>());
        ws.back()->park(f.service, "l", "w" + std::to_string(i));
        CHECK(ws.back()->id != 0);
    }
    CHECK_EQ(f.service.stats().waiters, uint64_t{50});
    uint64_t last_token = f.view("l").record.token;
    std::string holder = "holder";
    for (int i = 0; i < 50; ++i) {
        CHECK(f.service.release("l", holder).outcome == Outcome::Released);
        Result r = ws[i]->get();
        CHECK(r.outcome == Outcome::Acquired);
        CHECK_EQ(r.view.record.owner, "w" + std::to_string(i));
        CHECK(r.view.record.token > last_token);
        last_token = r.view.record.token;
        // Exactly the head was woken: nobody behind it completed.
        for (int k = i + 1; k < 50; ++k) CHECK_EQ(ws[k]->calls.load(), 0);
        holder = r.view.record.owner;
    }
    for (auto &w : ws) CHECK_EQ(w->calls.load(), 1);
    CHECK_EQ(f.service.stats().waiters, uint64_t{0});
    CHECK_EQ(f.service.stats().handovers, uint64_t{50});
}

void a_waiter_that_left_is_skipped() {
    Fixture f;
    CHECK(f.now("l", "holder").outcome == Outcome::Acquired);
    Waiter gone, next;
    gone.park(f.service, "l", "gone");
    next.park(f.service, "l", "next");
    f.service.abandon(gone.id);
    CHECK(f.service.release("l", "holder").outcome == Outcome::Released);
    CHECK_EQ(next.get().view.record.owner, std::string("next"));
    CHECK_EQ(gone.calls.load(), 0);
    CHECK_EQ(f.view("l").record.owner, std::string("next"));
}

void a_new_contender_does_not_overtake_waiters() {
    Fixture f;
    CHECK(f.now("l", "holder").outcome == Outcome::Acquired);
    Waiter w;
    w.park(f.service, "l", "waiter");
    // A try from someone else while a waiter queues: 409, even at the moment of release.
    CHECK(f.now("l", "barger").outcome == Outcome::Conflict);
    CHECK(f.service.release("l", "holder").outcome == Outcome::Released);
    CHECK_EQ(w.get().view.record.owner, std::string("waiter"));
    // The holder's renewal goes through while others queue.
    Waiter w2;
    w2.park(f.service, "l", "second");
    CHECK(f.now("l", "waiter").outcome == Outcome::Acquired);
}

void a_waiter_times_out_with_the_holder() {
    Fixture f;
    CHECK(f.now("l", "holder").outcome == Outcome::Acquired);
    Waiter w;
    auto start = std::chrono::steady_clock::now();
    w.park(f.service, "l", "waiter", 200ms);
    Result r = w.get();
    CHECK(r.outcome == Outcome::Conflict);
    CHECK_EQ(r.view.record.owner, std::string("holder"));
    CHECK(std::chrono::steady_clock::now() - start >= 200ms);
    CHECK_EQ(f.service.stats().waiters, uint64_t{0});
}

void closing_a_session_releases_its_holds_and_hands_them_on() {
    Fixture f;
    std::string s = f.service.open_session();
    Result held = f.now("a", "p1", s);
    CHECK(held.outcome == Outcome::Acquired);
    CHECK_EQ(held.view.session, s);
    CHECK(f.now("b", "p1", s).outcome == Outcome::Acquired);
    CHECK(f.now("c", "p1").outcome == Outcome::Acquired);  // not tied
    Waiter w;
    w.park(f.service, "a", "p2");
    CHECK_EQ(f.service.holds_tied(s), size_t{2});
    CHECK_EQ(f.service.close_session(s), 2);
    CHECK_EQ(w.get().view.record.owner, std::string("p2"));
    CHECK(f.view("b").record.owner.empty());
    CHECK_EQ(f.view("c").record.owner, std::string("p1"));
    // An unknown session ties nothing.
    Result untied = f.now("d", "p3", "no-such-session");
    CHECK(untied.outcome == Outcome::Acquired);
    CHECK(untied.view.session.empty());
}

// Found by fuzz_lock_service: a handed-over hold kept the previous holder's
// session, so closing that session released the new holder's lock.
void a_handed_over_hold_is_not_tied_to_the_old_session() {
    Fixture f;
    std::string s = f.service.open_session();
    CHECK(f.now("l", "a", s).outcome == Outcome::Acquired);
    Waiter b;
    b.park(f.service, "l", "b");
    CHECK(f.service.release("l", "a").outcome == Outcome::Released);
    Result got = b.get();
    CHECK(got.outcome == Outcome::Acquired);
    CHECK(got.view.session.empty());
    CHECK_EQ(f.service.close_session(s), 0);
    CHECK_EQ(f.view("l").record.owner, std::string("b"));
}

void a_takeover_tells_the_old_holders_session() {
    Fixture f;
    std::vector<std::pair<std::string, std::string>> events;
    std::mutex mu;
    f.service.set_session_sink([&](const std::string &s, const std::string &e) {
        std::lock_guard<std::mutex> g(mu);
        events.emplace_back(s, e);
    });
    std::string s = f.service.open_session();
    Result r;
    f.service.acquire({"l", "old", 1, s, 0ms}, [&](const Result &x) { r = x; });
    CHECK(r.outcome == Outcome::Acquired);
    std::this_thread::sleep_for(1100ms);  // the TTL itself is what is tested here
    CHECK(f.now("l", "new").outcome == Outcome::Acquired);
    std::lock_guard<std::mutex> g(mu);
    CHECK_EQ(events.size(), size_t{1});
    if (!events.empty()) {
        CHECK_EQ(events[0].first, s);
        CHECK(events[0].second.find("\"type\":\"lost\"") != std::string::npos);
    }
}

void tokens_grow_across_epochs_and_reclaimed_records() {
    uint64_t before;
    {
        ServiceOptions o;
        o.reclaim_after = 50ms;
        Fixture f(o, 7);
        Result r = f.now("l", "a");
        CHECK(r.view.record.token > (uint64_t{7} << 32));
        CHECK(f.service.release("l", "a").outcome == Outcome::Released);
        // Reclaimed after 50 ms: the name is forgotten...
        bool gone = false;
        for (int i = 0; i < 200 && !gone; ++i) {
            LockView v;
            gone = !f.service.get("l", &v);
            if (!gone) std::this_thread::sleep_for(10ms);
        }
        CHECK(gone);
        // ...and its next token is still larger.
        Result again = f.now("l", "b");
        CHECK(again.view.record.token > r.view.record.token);
        before = again.view.record.token;
    }
    Fixture next({}, 8);  // the next run: a larger epoch
    CHECK(next.now("l", "c").view.record.token > before);
}

void nothing_is_granted_during_the_grace_period() {
    ServiceOptions o;
    o.grace_until = mp::MonoClock::now() + 300ms;
    Fixture f(o);
    CHECK(f.now("l", "early").outcome == Outcome::Recovering);
    Waiter w;
    w.park(f.service, "l", "patient");
    CHECK(w.id != 0);
    Result r = w.get();
    CHECK(r.outcome == Outcome::Acquired);
    CHECK(mp::MonoClock::now() >= o.grace_until);
}

void shutdown_answers_every_waiter_once() {
    Fixture f;
    CHECK(f.now("l", "holder").outcome == Outcome::Acquired);
    Waiter a, b;
    a.park(f.service, "l", "a");
    b.park(f.service, "m", "b");  // a free lock: granted at once, not parked
    CHECK(b.id == 0);
    f.service.begin_shutdown();
    CHECK(a.get().outcome == Outcome::ShuttingDown);
    CHECK(f.now("x", "late").outcome == Outcome::ShuttingDown);
    CHECK_EQ(a.calls.load(), 1);
}

void release_of_another_hold_is_refused() {
    Fixture f;
    Result r = f.now("l", "o");
    CHECK(f.service.release("l", "o", r.view.record.token + 1).outcome == Outcome::Conflict);
    CHECK(f.service.release("l", "other").outcome == Outcome::Conflict);
    CHECK(f.service.release("l", "o", r.view.record.token).outcome == Outcome::Released);
    CHECK(f.service.release("missing", "o").outcome == Outcome::NotFound);
}

}  // namespace

int main() {
    release_hands_over_in_fifo_order_one_wakeup_each();
    a_waiter_that_left_is_skipped();
    a_new_contender_does_not_overtake_waiters();
    a_waiter_times_out_with_the_holder();
    closing_a_session_releases_its_holds_and_hands_them_on();
    a_handed_over_hold_is_not_tied_to_the_old_session();
    a_takeover_tells_the_old_holders_session();
    tokens_grow_across_epochs_and_reclaimed_records();
    nothing_is_granted_during_the_grace_period();
    shutdown_answers_every_waiter_once();
    release_of_another_hold_is_refused();
    return mptest::check_report("lock_service_test");
}
