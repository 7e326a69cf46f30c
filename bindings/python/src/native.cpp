// metaparticle._native: the pybind11 layer over the C ABI in metaparticle.h.
//
// Thin by design: every distributed-systems decision lives in libmetaparticle.
// This file only translates between Python and C:
//   - types (str <-> const char *, Optional, int tokens),
//   - errors (MP_* codes -> metaparticle.errors classes, via mp_error_last()),
//   - threads (the GIL is released around every C call that can block, and
//     taken in callbacks that C invokes from its own threads),
//   - Ctrl-C (a blocking C call runs on a helper thread while the calling
//     thread waits in short slices and checks for signals; on a signal the C
//     call is canceled through the ABI and KeyboardInterrupt is raised),
//   - lifetimes (Python callables stay referenced while C can call them; the
//     C handle is freed only when no thread is inside a method using it),
//   - Package: containerize / render / in_container (the JSON options are
//     assembled by metaparticle/_package.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <metaparticle.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

using namespace std::chrono_literals;

// How often a thread blocked in a C call wakes up to look for signals (only
// the main thread can receive them). This bounds Ctrl-C latency; a wake-up is
// a mutex and the GIL, no network traffic.
constexpr auto kSignalPoll = 50ms;
// How often a cancel/stop is repeated while waiting for a canceled call to
// return: a cancel that lands before the C call has started is reset by it.
constexpr auto kCancelRetry = 50ms;

unsigned long g_main_thread_ident = 0;

bool on_main_thread() { return PyThread_get_thread_ident() == g_main_thread_ident; }

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

// A C call's result, captured on the thread that made the call (the message
// behind mp_error_last() is thread-local).
struct Result {
    int rc = MP_OK;
    std::string message;
};

Result capture(int rc) {
    Result r;
    r.rc = rc;
    if (rc != MP_OK) r.message = mp_error_last();
    return r;
}

// Raise the metaparticle.errors class for `code`. GIL held.
[[noreturn]] void raise_error(int code, const std::string &message) {
    py::object exc = py::module_::import("metaparticle.errors").attr("_from_code")(code, message);
    PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

void check(const Result &r) {
    if (r.rc != MP_OK) raise_error(r.rc, r.message);
}

// Run a C call without the GIL (it may block on the network or on a mutex that
// a callback thread holds while it waits for the GIL).
template <typename F>
Result nogil(F &&f) {
    py::gil_scoped_release release;
    return capture(f());
}

// Strings go to C as NUL-terminated; an embedded NUL would silently cut them.
const char *c_str(const std::optional<std::string> &s, const char *what) {
    if (!s) return nullptr;
    if (s->find('\0') != std::string::npos) raise_error(MP_EINVAL, std::string(what) + " contains a NUL character");
    return s->c_str();
}

// Call a user callable from a callback. Exceptions are reported through
// sys.unraisablehook (printed by default, like exceptions in __del__) and
// never propagate into C. GIL held.
void invoke_reporting(const py::object &target) {
    try {
        target();
    } catch (py::error_already_set &e) {
        e.discard_as_unraisable(target);
    } catch (const std::exception &e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
        PyErr_WriteUnraisable(target.ptr());
    }
}

// The Python layer hands us a "sink" per event: calling it does the layer's
// bookkeeping and returns the user's callable (or None). We call that one
// ourselves so an exception report names the user's function. GIL held.
void fire(const py::object &sink) {
    py::object target;
    try {
        target = sink();
    } catch (py::error_already_set &e) {
        e.discard_as_unraisable(sink);
        return;
    }
    if (!target.is_none()) invoke_reporting(target);
}

// ---------------------------------------------------------------------------
// Object lifetime: a C handle must not be freed while another thread is inside
// a method that uses it (e.g. blocked in acquire) nor from its own callback
// thread (the C library refuses; it would have to join itself).
// ---------------------------------------------------------------------------

// Objects the current thread is inside a method of (so close() from within,
// e.g. from an election callback, must not wait for itself).
thread_local std::vector<const void *> tls_active;
// The callback state whose C callback this thread is running.
thread_local const void *tls_callback_of = nullptr;

class Resource {
public:
    virtual ~Resource() = default;

    // Marks one method call in progress; raises InvalidStateError on a closed
    // object (or, with raise = false, just tests false).
    class Use {
    public:
        explicit Use(Resource &r, bool raise = true) : r_(r) {
            {
                std::lock_guard<std::mutex> g(r.mu_);
                ok_ = !r.closing_;
                if (ok_) ++r.active_;
            }
            if (!ok_) {
                if (raise) raise_error(MP_ESTATE, r.describe() + " is closed");
                return;
            }
            tls_active.push_back(&r_);
        }
        ~Use() {
            if (!ok_) return;
            auto it = std::find(tls_active.rbegin(), tls_active.rend(), static_cast<const void *>(&r_));
            if (it != tls_active.rend()) tls_active.erase(std::next(it).base());
            bool finish_now = false;
            {
                std::lock_guard<std::mutex> g(r_.mu_);
                --r_.active_;
                finish_now = r_.closing_ && r_.deferred_ && r_.active_ == 0 && !r_.finished_;
                if (finish_now) r_.finished_ = true;
                r_.cv_.notify_all();
            }
            // close() was called from inside this call (e.g. from an election
            // callback during run()); the last call out frees. GIL held here:
            // every Use lives in a method body that holds it.
            if (finish_now) r_.finish();
        }
        explicit operator bool() const { return ok_; }
        Use(const Use &) = delete;
        Use &operator=(const Use &) = delete;

    private:
        Resource &r_;
        bool ok_ = false;
    };

    // Free the C handle once no method is using it. GIL held.
    void close() {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (closing_ && (finished_ || deferred_)) return;
            closing_ = true;
        }
        interrupt();
        if (std::find(tls_active.begin(), tls_active.end(), static_cast<const void *>(this)) != tls_active.end()) {
            std::lock_guard<std::mutex> g(mu_);
            deferred_ = true;  // our own method is still running below us
            return;
        }
        {
            py::gil_scoped_release release;  // the calls we wait for need the GIL to finish
            std::unique_lock<std::mutex> lk(mu_);
            while (!cv_.wait_for(lk, kCancelRetry, [&] { return active_ == 0; })) {
                lk.unlock();
                interrupt();
                lk.lock();
            }
            if (finished_) return;
            finished_ = true;
        }
        finish();
    }

    bool closed() {
        std::lock_guard<std::mutex> g(mu_);
        return closing_;
    }

protected:
    // Called by the subclass destructor: nobody can be inside a method then
    // (each call holds a reference to the object). GIL held.
    void close_for_destruction() {
        bool need;
        {
            std::lock_guard<std::mutex> g(mu_);
            closing_ = true;
            need = !finished_;
            finished_ = true;
        }
        if (need) finish();
    }

    virtual std::string describe() const = 0;
    // Make blocking calls on the handle return soon (cancel / stop). Thread-safe.
    virtual void interrupt() = 0;
    // Free the C handle and drop Python references. Called once; GIL held.
    virtual void finish() = 0;

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int active_ = 0;
    bool closing_ = false;
    bool deferred_ = false;
    bool finished_ = false;
};

// ---------------------------------------------------------------------------
// Blocking calls: run the C call on a helper thread; the Python thread waits,
// runs marshalled callbacks, and watches for signals.
// ---------------------------------------------------------------------------

class Runner {
public:
    // From a C callback on the helper thread: hand `event` to the Python
    // thread waiting in run() and block until it has been handled there.
    void post(int event) {
        std::unique_lock<std::mutex> lk(mu_);
        event_ = event;
        served_ = false;
        cv_.notify_all();
        cv_.wait(lk, [&] { return served_; });
    }

    // GIL held. `call` runs without the GIL on a helper thread; `cancel` must
    // make it return soon; `serve(event)` runs posted events on this thread
    // and may throw error_already_set to end the call (it is then canceled).
    // On a signal (or a throwing serve) the C call is canceled, waited for,
    // and `interrupted` holds the Python exception to raise.
    template <typename Call, typename Cancel, typename Serve>
    Result run(Call call, Cancel cancel, Serve serve, std::unique_ptr<py::error_already_set> &interrupted) {
        std::thread helper([this, &call] {
            Result r = capture(call());
            std::lock_guard<std::mutex> g(mu_);
            result_ = std::move(r);
            done_ = true;
            cv_.notify_all();
        });
        try {
            wait_loop(cancel, serve, interrupted);
        } catch (...) {
            // Never leave with the helper running: it references this frame.
            {
                py::gil_scoped_release release;
                std::unique_lock<std::mutex> lk(mu_);
                while (!cv_.wait_for(lk, kCancelRetry, [&] { return done_; })) {
                    if (event_ != 0) {  // nobody will run it now
                        event_ = 0;
                        served_ = true;
                        cv_.notify_all();
                    }
                    lk.unlock();
                    cancel();
                    lk.lock();
                }
            }
            helper.join();
            throw;
        }
        {
            py::gil_scoped_release release;
            helper.join();
        }
        return result_;
    }

private:
    template <typename Cancel, typename Serve>
    void wait_loop(Cancel &cancel, Serve &serve, std::unique_ptr<py::error_already_set> &interrupted) {
        const bool main = on_main_thread();
        for (;;) {
            bool done;
            int event;
            {
                py::gil_scoped_release release;
                std::unique_lock<std::mutex> lk(mu_);
                auto ready = [&] { return done_ || event_ != 0; };
                if (interrupted)
                    cv_.wait_for(lk, kCancelRetry, ready);
                else if (main)
                    cv_.wait_for(lk, kSignalPoll, ready);
                else
                    cv_.wait(lk, ready);  // signals never reach other threads
                done = done_;
                event = event_;
            }
            if (done) break;
            if (event != 0) {
                if (!interrupted) {
                    try {
                        serve(event);
                    } catch (py::error_already_set &e) {
                        interrupted = std::make_unique<py::error_already_set>(e);
                        cancel();
                    }
                }
                std::lock_guard<std::mutex> g(mu_);
                event_ = 0;
                served_ = true;
                cv_.notify_all();
                continue;
            }
            if (interrupted) {
                cancel();  // repeat: the first may have landed before the call started
            } else if (main && PyErr_CheckSignals() != 0) {
                interrupted = std::make_unique<py::error_already_set>();
                cancel();
            }
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    Result result_;
    int event_ = 0;
    bool served_ = false;
};

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

// The C handle's user_data. Outlives the handle: deleted only after
// mp_lock_free() has returned, which waits for running callbacks.
struct LockState {
    std::atomic<bool> closed{false};
    py::object on_lost;      // sinks; touched only with the GIL
    py::object on_acquired;
};

void lock_callback(LockState *s, bool lost) {
    if (interpreter_finalizing()) return;  // taking the GIL now would kill this thread
    py::gil_scoped_acquire gil;
    if (s->closed) return;
    py::object sink = lost ? s->on_lost : s->on_acquired;
    if (!sink || sink.is_none()) return;
    const void *prev = tls_callback_of;
    tls_callback_of = s;
    fire(sink);
    tls_callback_of = prev;
}

extern "C" void lock_on_lost(mp_lock *, void *ud) { lock_callback(static_cast<LockState *>(ud), true); }
extern "C" void lock_on_acquired(mp_lock *, void *ud) { lock_callback(static_cast<LockState *>(ud), false); }

class Lock : public Resource {
public:
    Lock(const std::string &name, const std::optional<std::string> &sidecar, const std::optional<std::string> &owner,
         unsigned ttl, py::object on_lost)
        : state_(new LockState) {
        if (name.find('\0') != std::string::npos) {
            delete state_;
            raise_error(MP_EINVAL, "lock name contains a NUL character");
        }
        mp_lock_options opts = MP_LOCK_OPTIONS_INIT;
        try {
            opts.sidecar_url = c_str(sidecar, "sidecar URL");
            opts.owner = c_str(owner, "owner");
        } catch (...) {
            delete state_;
            throw;
        }
        opts.ttl_seconds = ttl;
        if (!on_lost.is_none()) {
            // With no handler, C prints why and exits the process on a loss.
            state_->on_lost = std::move(on_lost);
            opts.on_lost = lock_on_lost;
            opts.user_data = state_;
        }
        Result r = capture(mp_lock_create(&h_, name.c_str(), &opts));  // no I/O: keeps the GIL
        if (r.rc != MP_OK) {
            delete state_;  // no handle, so no callback can reference it
            state_ = nullptr;
            raise_error(r.rc, r.message);
        }
        name_ = mp_lock_name(h_);
        owner_ = mp_lock_owner(h_);
    }

    ~Lock() override { close_for_destruction(); }

    // timeout_ms < 0: forever. Returns false when the timeout passed, unless
    // raise_on_timeout (then LockTimeoutError with the library's message).
    bool acquire(long long timeout_ms, bool raise_on_timeout) {
        Use use(*this);
        int t = timeout_ms < 0 ? -1 : static_cast<int>(std::min<long long>(timeout_ms, INT_MAX));
        Result r;
        if (t == 0) {
            r = nogil([&] { return mp_lock_acquire(h_, 0); });
        } else {
            Runner runner;
            std::unique_ptr<py::error_already_set> interrupted;
            r = runner.run([&] { return mp_lock_acquire(h_, t); }, [&] { mp_lock_cancel(h_); }, [](int) {},
                           interrupted);
            if (interrupted) {
                // Acquired just as the signal came: the caller never learns of
                // it, so do not leave the lock held.
                if (r.rc == MP_OK) nogil([&] { return mp_lock_release(h_); });
                interrupted->restore();
                throw py::error_already_set();
            }
        }
        if (r.rc == MP_ETIMEOUT && !raise_on_timeout) return false;
        // close() (e.g. at interpreter exit) cancels waiters: for them the
        // lock was simply not acquired, like a timeout. An explicit cancel()
        // still raises CanceledError.
        if (r.rc == MP_ECANCELED && closed()) {
            if (!raise_on_timeout) return false;
            raise_error(MP_ESTATE, describe() + " was closed while acquiring");
        }
        check(r);
        return true;
    }

    bool try_acquire() {
        Use use(*this);
        Result r = nogil([&] { return mp_lock_try_acquire(h_); });
        if (r.rc == MP_EBUSY) return false;
        check(r);
        return true;
    }

    void lock_async(py::object on_acquired) {
        Use use(*this);
        // Set before the C call: the callback may run as soon as it returns.
        py::object previous = std::move(state_->on_acquired);
        state_->on_acquired = std::move(on_acquired);
        Result r = nogil([&] { return mp_lock_lock_async(h_, lock_on_acquired, state_); });
        if (r.rc != MP_OK) {
            state_->on_acquired = std::move(previous);
            raise_error(r.rc, r.message);
        }
    }

    void release() {
        Use use(*this);
        check(nogil([&] { return mp_lock_release(h_); }));
    }

    void cancel() {
        Use use(*this);
        check(capture(mp_lock_cancel(h_)));
    }

    bool held() {
        Use use(*this, false);
        if (!use) return false;
        int held = 0;
        check(capture(mp_lock_is_held(h_, &held)));
        return held != 0;
    }

    std::optional<uint64_t> token() {
        Use use(*this, false);
        if (!use) return std::nullopt;
        uint64_t token = 0;
        Result r = capture(mp_lock_token(h_, &token));
        if (r.rc == MP_ENOTHELD) return std::nullopt;
        check(r);
        return token;
    }

    const std::string &name() const { return name_; }
    const std::string &owner() const { return owner_; }

protected:
    std::string describe() const override { return "lock '" + name_ + "'"; }

    void interrupt() override {
        if (h_) mp_lock_cancel(h_);
    }

    void finish() override {
        mp_lock *h = std::exchange(h_, nullptr);
        LockState *s = std::exchange(state_, nullptr);
        if (!s) return;
        s->closed = true;
        {
            // Drop our references while we hold the GIL; a callback that is
            // running holds its own.
            py::object a = std::move(s->on_lost), b = std::move(s->on_acquired);
        }
        if (tls_callback_of == s) {
            // Closed (or garbage-collected) from inside its own callback:
            // mp_lock_free() would have to join this very thread. Free it
            // from a helper once the callback has returned.
            std::thread([h, s] {
                mp_lock_free(h);
                delete s;
            }).detach();
            return;
        }
        py::gil_scoped_release release;  // mp_lock_free waits for callbacks, which need the GIL
        mp_lock_free(h);
        delete s;
    }

private:
    mp_lock *h_ = nullptr;
    LockState *state_ = nullptr;
    std::string name_, owner_;
};

// ---------------------------------------------------------------------------
// Election
// ---------------------------------------------------------------------------

enum ElectionEvent { kLeader = 1, kLost = 2 };

struct ElectionState {
    std::atomic<bool> closed{false};
    py::object on_leader, on_lost;  // sinks; touched only with the GIL
    std::mutex mu;
    Runner *runner = nullptr;  // the run() in progress
};

// C calls these on the thread running mp_election_run(), which is our helper
// thread: pass the event to the Python thread that called run().
void election_callback(ElectionState *s, int event) {
    Runner *runner;
    {
        // Not held across post(): run() takes this mutex with the GIL held,
        // and post() waits for a thread that needs the GIL.
        std::lock_guard<std::mutex> g(s->mu);
        runner = s->runner;
    }
    // The runner outlives this call: it lives until the helper thread (this
    // one) has returned from mp_election_run().
    if (runner) runner->post(event);
}

extern "C" void election_on_leader(mp_election *, void *ud) { election_callback(static_cast<ElectionState *>(ud), kLeader); }
extern "C" void election_on_lost(mp_election *, void *ud) { election_callback(static_cast<ElectionState *>(ud), kLost); }

class Election : public Resource {
public:
    Election(const std::string &name, const std::optional<std::string> &sidecar,
             const std::optional<std::string> &identity, unsigned ttl, py::object on_leader, py::object on_lost)
        : state_(new ElectionState), name_(name) {
        mp_election_options opts = MP_ELECTION_OPTIONS_INIT;
        try {
            if (name.find('\0') != std::string::npos) raise_error(MP_EINVAL, "election name contains a NUL character");
            opts.sidecar_url = c_str(sidecar, "sidecar URL");
            opts.identity = c_str(identity, "identity");
        } catch (...) {
            delete state_;
            throw;
        }
        opts.ttl_seconds = ttl;
        opts.user_data = state_;
        if (!on_leader.is_none()) {
            state_->on_leader = std::move(on_leader);
            opts.on_leader = election_on_leader;
        }
        if (!on_lost.is_none()) {
            state_->on_lost = std::move(on_lost);
            opts.on_lost = election_on_lost;
        }
        Result r = capture(mp_election_create(&h_, name.c_str(), &opts));
        if (r.rc != MP_OK) {
            delete state_;
            state_ = nullptr;
            raise_error(r.rc, r.message);
        }
        identity_ = mp_election_identity(h_);
    }

    ~Election() override { close_for_destruction(); }

    void run() {
        Use use(*this);
        Runner runner;
        {
            std::lock_guard<std::mutex> g(state_->mu);
            if (state_->runner) raise_error(MP_ESTATE, "election '" + name_ + "' is already running");
            state_->runner = &runner;
        }
        ElectionState *s = state_;
        std::unique_ptr<py::error_already_set> interrupted;
        Result r = runner.run([&] { return mp_election_run(h_); }, [&] { mp_election_stop(h_); },
                              [s](int event) {
                                  if (s->closed) return;
                                  py::object sink = event == kLeader ? s->on_leader : s->on_lost;
                                  if (!sink || sink.is_none()) return;
                                  serve_election_event(sink);
                              },
                              interrupted);
        {
            std::lock_guard<std::mutex> g(state_->mu);
            state_->runner = nullptr;
        }
        if (interrupted) {
            interrupted->restore();
            throw py::error_already_set();
        }
        check(r);
    }

    void stop() {
        Use use(*this);
        check(capture(mp_election_stop(h_)));
    }

    bool is_leader() {
        Use use(*this, false);
        if (!use) return false;
        int leader = 0;
        check(capture(mp_election_is_leader(h_, &leader)));
        return leader != 0;
    }

    std::optional<std::string> leader() {
        Use use(*this);
        char *out = nullptr;
        check(nogil([&] { return mp_election_leader(h_, &out); }));
        if (!out) return std::nullopt;
        std::string who(out);
        mp_free(out);
        return who;
    }

    const std::string &name() const { return name_; }
    const std::string &identity() const { return identity_; }

protected:
    std::string describe() const override { return "election '" + name_ + "'"; }

    void interrupt() override {
        if (h_) mp_election_stop(h_);
    }

    void finish() override {
        mp_election *h = std::exchange(h_, nullptr);
        ElectionState *s = std::exchange(state_, nullptr);
        if (!s) return;
        s->closed = true;
        {
            py::object a = std::move(s->on_leader), b = std::move(s->on_lost);
        }
        // Callbacks run inside run(), and no run() is active here, so the
        // free cannot wait on a callback of ours.
        py::gil_scoped_release release;
        mp_election_free(h);
        delete s;
    }

private:
    // Runs on the thread that called run(), with the GIL. Exceptions from the
    // user's callback are reported, except KeyboardInterrupt / SystemExit
    // (not Exception subclasses): those stop the election and leave run().
    static void serve_election_event(const py::object &sink) {
        py::object target;
        try {
            target = sink();
        } catch (py::error_already_set &e) {
            if (!e.matches(PyExc_Exception)) throw;
            e.discard_as_unraisable(sink);
            return;
        }
        if (target.is_none()) return;
        try {
            target();
        } catch (py::error_already_set &e) {
            if (!e.matches(PyExc_Exception)) throw;
            e.discard_as_unraisable(target);
        }
    }

    mp_election *h_ = nullptr;
    ElectionState *state_ = nullptr;
    std::string name_, identity_;
};

// ---------------------------------------------------------------------------
// Package: containerize. The Python layer (metaparticle/_package.py) decides
// what goes into the image (interpreter, stdlib, imported packages) and hands
// the C core complete JSON options; this part only calls the three functions.
// ---------------------------------------------------------------------------

bool in_container() {
    int inside = 0;
    check(capture(mp_in_container(&inside)));
    return inside != 0;
}

// The user's main, called by mp_containerize inside a container. Python
// exceptions cannot cross the C call: the first one is kept here and raised
// again once mp_containerize has returned.
struct MainCall {
    py::object main;
    std::unique_ptr<py::error_already_set> error;
};

extern "C" int containerize_main(void *user_data) {
    auto *call = static_cast<MainCall *>(user_data);
    // Runs on the thread that called mp_containerize. Inside a container
    // that thread holds the GIL (ensure is then a no-op); the core never
    // calls main outside, but if it did, this would still be safe.
    py::gil_scoped_acquire gil;
    try {
        py::object r = call->main();
        // The Python layer's wrapper already turned main's result into an int.
        return r.cast<int>();
    } catch (py::error_already_set &e) {
        call->error = std::make_unique<py::error_already_set>(std::move(e));
    } catch (const std::exception &e) {
        // e.g. a cast_error: keep it as a Python exception too
        PyErr_SetString(PyExc_RuntimeError, e.what());
        call->error = std::make_unique<py::error_already_set>();
    }
    return 1;
}

// Replaces a signal's handler with SIG_DFL for the lifetime of the object
// (unless it is ignored), at the C level, behind the back of Python's signal
// module, which therefore needs no update when it is put back.
//
// Why: mp_containerize installs its own SIGINT/SIGTERM handlers (first signal
// = tear down and return) and, on a second signal, restores the handlers it
// found and re-raises. Were Python's handler the one it found, the second
// Ctrl-C would only set a flag nobody reads while the C teardown runs, and
// could not abort a stuck teardown. With SIG_DFL there, the second Ctrl-C
// ends the process at once, as it does for a C program. Any Ctrl-C in the
// instant before the core installs its handler also ends the process, before
// anything was started.
class DefaultSignal {
public:
    explicit DefaultSignal(int sig) : sig_(sig) {
        struct sigaction dfl;
        std::memset(&dfl, 0, sizeof dfl);
        sigemptyset(&dfl.sa_mask);
        dfl.sa_handler = SIG_DFL;
        if (sigaction(sig, nullptr, &old_) != 0) return;
        if (old_.sa_handler == SIG_IGN && !(old_.sa_flags & SA_SIGINFO)) return;  // respect "ignore"
        active_ = sigaction(sig, &dfl, nullptr) == 0;
    }
    ~DefaultSignal() {
        if (active_) sigaction(sig_, &old_, nullptr);
    }
    DefaultSignal(const DefaultSignal &) = delete;
    DefaultSignal &operator=(const DefaultSignal &) = delete;

private:
    int sig_;
    struct sigaction old_;
    bool active_ = false;
};

// Returns the exit code (main's result inside; 0 after Ctrl-C outside, or a
// job's first non-zero exit code). `main` must return an int.
int containerize(const std::string &options_json, py::object main) {
    if (options_json.find('\0') != std::string::npos) raise_error(MP_EINVAL, "containerize options contain a NUL character");
    MainCall call{std::move(main), nullptr};
    int exit_code = 0;
    Result r;
    if (in_container()) {
        // main runs right here, on this thread: keep the GIL.
        r = capture(mp_containerize(options_json.c_str(), containerize_main, &call, &exit_code));
        if (call.error) {
            call.error->restore();
            throw py::error_already_set();
        }
    } else {
        // Building, pushing and following the replicas' logs take minutes:
        // other Python threads keep running meanwhile.
        DefaultSignal sigint(SIGINT), sigterm(SIGTERM);
        r = nogil([&] { return mp_containerize(options_json.c_str(), containerize_main, &call, &exit_code); });
    }
    check(r);
    return exit_code;
}

std::string containerize_render(const std::string &options_json) {
    if (options_json.find('\0') != std::string::npos) raise_error(MP_EINVAL, "containerize options contain a NUL character");
    char *out = nullptr;
    // Reads and compresses the image's files: seconds for a Python runtime.
    check(nogil([&] { return mp_containerize_render(options_json.c_str(), &out); }));
    std::string json(out ? out : "");
    mp_free(out);
    return json;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "Low-level binding of libmetaparticle's C ABI. Use the `metaparticle` package instead.";
    g_main_thread_ident = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

    m.def("version", [] { return std::string(mp_version()); }, "The version of the loaded libmetaparticle.");
    m.def("error_name", [](int code) { return std::string(mp_error_name(code)); },
          "The short name of an MP_* error code, e.g. 'MP_ETIMEOUT'.");
    m.attr("HEADER_VERSION") = MP_VERSION_STRING;

    py::class_<Lock>(m, "Lock")
        .def(py::init<const std::string &, const std::optional<std::string> &, const std::optional<std::string> &,
                      unsigned, py::object>(),
             py::arg("name"), py::arg("sidecar"), py::arg("owner"), py::arg("ttl"), py::arg("on_lost"))
        .def("acquire", &Lock::acquire, py::arg("timeout_ms"), py::arg("raise_on_timeout"))
        .def("try_acquire", &Lock::try_acquire)
        .def("lock_async", &Lock::lock_async, py::arg("on_acquired"))
        .def("release", &Lock::release)
        .def("cancel", &Lock::cancel)
        .def("close", &Lock::close)
        .def_property_readonly("closed", &Lock::closed)
        .def_property_readonly("held", &Lock::held)
        .def_property_readonly("token", &Lock::token)
        .def_property_readonly("name", &Lock::name)
        .def_property_readonly("owner", &Lock::owner);

    py::class_<Election>(m, "Election")
        .def(py::init<const std::string &, const std::optional<std::string> &, const std::optional<std::string> &,
                      unsigned, py::object, py::object>(),
             py::arg("name"), py::arg("sidecar"), py::arg("identity"), py::arg("ttl"), py::arg("on_leader"),
             py::arg("on_lost"))
        .def("run", &Election::run)
        .def("stop", &Election::stop)
        .def("close", &Election::close)
        .def_property_readonly("closed", &Election::closed)
        .def_property_readonly("is_leader", &Election::is_leader)
        .def("leader", &Election::leader)
        .def_property_readonly("name", &Election::name)
        .def_property_readonly("identity", &Election::identity);

    m.def("in_container", &in_container,
          "True inside a container built by containerize (METAPARTICLE_IN_CONTAINER is true or 1).");
    m.def("containerize", &containerize, py::arg("options_json"), py::arg("main"),
          "mp_containerize: run main() inside the container; outside, build, push and run. Returns the exit code.");
    m.def("containerize_render", &containerize_render, py::arg("options_json"),
          "mp_containerize_render: what containerize would build and create, as JSON text.");
}
