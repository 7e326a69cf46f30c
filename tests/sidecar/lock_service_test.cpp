// Unit tests of the sidecar's LockService over the memory backend, for rules
// that need a precisely timed interleaving the HTTP tests cannot produce:
// a requester that hangs up between the service's "still listening?" check
// and the write that makes it the holder. Usage: lock_service_test
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include "backends/backend.h"
#include "lock_service.h"

#include "check.h"

using namespace mp::sidecar;
using namespace std::chrono_literals;

namespace {

struct Fixture {
    std::unique_ptr<Backend> backend = make_memory_backend();
    LockService service{*backend};
    Fixture() {
        backend->start([this](const std::string &name) { service.notify_changed(name); });
    }
    ~Fixture() { backend->stop(); }

    // Blocks until `n` requests are long-polling.
    void wait_for_waiters(uint64_t n) {
        for (int i = 0; i < 500 && service.stats().waiters != n; ++i) std::this_thread::sleep_for(10ms);
        CHECK(service.stats().waiters == n);
    }
    LockView view(const std::string &name) {
        LockView v;
        CHECK(service.get(name, &v));
        return v;
    }
};

// The waiter is still connected when the service checks before trying, and
// hangs up right after (its check count says so), while the holder releases.
// The service must not leave the lock to it.
void hang_up_between_check_and_grant_gives_the_lock_back() {
    Fixture f;
    CHECK(f.service.acquire("l", "holder", 30, 0ms).outcome == Outcome::Acquired);
    std::atomic<int> asked{0};
    // Asked before the first try (connected), after the release wakes it
    // (connected), and after the grant: gone.
    auto abandoned = [&] { return ++asked >= 3; };
    auto waiter = std::async(std::launch::async, [&] { return f.service.acquire("l", "waiter", 30, 10s, abandoned); });
    f.wait_for_waiters(1);
    CHECK(f.service.release("l", "holder").outcome == Outcome::Released);
    Result r = waiter.get();
    CHECK(r.outcome == Outcome::Conflict);
    CHECK(asked == 3);
    LockView v = f.view("l");
    CHECK(v.record.owner.empty());
    CHECK(!v.held);
    CHECK(v.record.token == 2);  // the hold was written, then given back
    // The next requester gets it at once, with a newer token.
    Result next = f.service.acquire("l", "next", 30, 0ms);
    CHECK(next.outcome == Outcome::Acquired);
    CHECK(next.view.record.token == 3);
}

void listening_waiter_keeps_the_lock() {
    Fixture f;
    CHECK(f.service.acquire("l", "holder", 30, 0ms).outcome == Outcome::Acquired);
    std::atomic<int> asked{0};
    auto abandoned = [&] { return ++asked, false; };
    auto waiter = std::async(std::launch::async, [&] { return f.service.acquire("l", "waiter", 30, 10s, abandoned); });
    f.wait_for_waiters(1);
    CHECK(f.service.release("l", "holder").outcome == Outcome::Released);
    Result r = waiter.get();
    CHECK(r.outcome == Outcome::Acquired);
    CHECK(asked == 3);
    CHECK(f.view("l").record.owner == "waiter");
}

// Without a wait there is no check before the try, only after a grant.
void hang_up_during_an_immediate_grant_gives_the_lock_back() {
    Fixture f;
    Result r = f.service.acquire("l", "gone", 30, 0ms, [] { return true; });
    CHECK(r.outcome == Outcome::Conflict);
    CHECK(f.view("l").record.owner.empty());
    CHECK(f.service.acquire("l", "next", 30, 0ms).outcome == Outcome::Acquired);
}

// A renewal that the holder does not hear about keeps the hold: it was the
// holder's before the request, and the client library renews again.
void hang_up_during_a_renewal_keeps_the_hold() {
    Fixture f;
    Result first = f.service.acquire("l", "holder", 30, 0ms);
    CHECK(first.outcome == Outcome::Acquired);
    Result renewed = f.service.acquire("l", "holder", 30, 0ms, [] { return true; });
    CHECK(renewed.outcome == Outcome::Acquired);
    LockView v = f.view("l");
    CHECK(v.record.owner == "holder");
    CHECK(v.record.token == first.view.record.token);
}

}  // namespace

int main() {
    hang_up_between_check_and_grant_gives_the_lock_back();
    listening_waiter_keeps_the_lock();
    hang_up_during_an_immediate_grant_gives_the_lock_back();
    hang_up_during_a_renewal_keeps_the_hold();
    return mptest::check_report("lock_service_test");
}
