// metaparticle_sync.node: a thin Node-API layer over libmetaparticle's C ABI
// (include/metaparticle.h). It only translates: JS values to C arguments,
// MP_* codes to Error objects, and C callbacks (which run on library-owned
// threads) to events on the JavaScript thread. All lock and election logic
// lives in the C++ core.
//
// Threading model
//  - Calls that may block (mp_lock_acquire, mp_lock_release, mp_election_run,
//    mp_election_leader) run on a std::thread of their own, never on the event
//    loop and never on libuv's small shared thread pool (a lock waited on
//    forever would otherwise starve fs/dns/crypto work). Their result comes
//    back to the JS thread through a ThreadSafeFunction (TSFN) and settles a
//    promise.
//  - C callbacks (lock acquired/lost, became/stopped being leader) post an
//    event through the same TSFN; nothing user-visible runs off the JS thread.
//  - Calls that only take a mutex inside the core (mp_lock_lock_async,
//    mp_lock_is_held, mp_lock_token, mp_election_stop, ...) are made directly.
//
// Lifetime
//  - While a handle is busy (a lock pending or held, an election running, or
//    any blocking call in flight) its TSFN is ref'd, which keeps the process
//    alive, and the JS object is strongly referenced, so it cannot be
//    garbage-collected under a running callback. Once idle, both are
//    released and the process may exit.
//  - C callbacks and worker threads reach the JS side only through `Shared`,
//    which outlives both the wrapper and the TSFN (shared ownership), and
//    which knows whether the TSFN still exists (it is torn down on its own at
//    environment shutdown, possibly before our destructor runs).
#include <napi.h>

#include <metaparticle.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

// A failure captured on the thread that made the failing call: the message
// behind mp_error_last() is thread-local, so it must be copied right there.
struct Failure {
  int code = MP_OK;
  std::string message;
};

Failure CaptureFailure(int rc) { return Failure{rc, mp_error_last()}; }

// Error with .code = 'MP_ETIMEOUT' (string, as Node's own errors) and
// .errno = -3 (the numeric MP_* code).
Napi::Error MakeError(Napi::Env env, const Failure &f) {
  std::string message = f.message.empty() ? std::string(mp_error_name(f.code)) : f.message;
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, mp_error_name(f.code)));
  err.Set("errno", Napi::Number::New(env, f.code));
  return err;
}

[[noreturn]] void ThrowLast(Napi::Env env, int rc) { throw MakeError(env, CaptureFailure(rc)); }

// ---------------------------------------------------------------------------
// Blocking operations and events
// ---------------------------------------------------------------------------

// One blocking call running on its own thread, settling one promise.
struct Op {
  enum class Kind { Acquire, Release, Run, Stop, Leader };

  Op(Napi::Env env, Kind k) : kind(k), deferred(Napi::Promise::Deferred::New(env)) {}

  const Kind kind;
  Napi::Promise::Deferred deferred;  // JS thread only
  std::thread thread;

  // Written by the op's thread before it sets `finished`; read on the JS
  // thread after joining it.
  int rc = MP_OK;
  Failure failure;
  uint64_t token = 0;
  bool has_token = false;
  std::string leader;
  bool has_leader = false;

  bool finished = false;  // guarded by Shared::mu; signalled on Shared::cv

  // JS thread only.
  bool superseded = false;  // acquire: release() was called while it ran
  bool lost_early = false;  // acquire: the loss event overtook the result
};

enum class EventKind { LockAcquired, LockLost, Leader, LeaderLost, OpDone };

struct Event {
  EventKind kind;
  const Op *op;  // OpDone only: identifies the op; dereferenced only if still owned
};

struct Shared;

// The JS-thread side that receives events (the Lock and Election wrappers).
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual void OnEvent(Napi::Env env, const Event &ev) = 0;
  // At process (or worker) exit: first make waits return (non-blocking),
  // then give up what is held, stop and free the handle (blocking).
  virtual void CancelForExit() = 0;
  virtual void CloseForExit() = 0;
  virtual bool IsActive() const = 0;
};

// The wrappers alive in one Node environment (the main thread or a worker),
// so that exit can give their locks up at once instead of leaving them to
// expire after their TTL (a process.exit() from a SIGTERM handler is common
// in Kubernetes). JS thread only. Shared so that no destructor depends on the
// order in which the environment tears things down.
struct Registry {
  std::set<Endpoint *> live;
};
using RegistryPtr = std::shared_ptr<Registry>;

void CallJs(Napi::Env env, Napi::Function, Shared *shared, Event *ev);
using Tsfn = Napi::TypedThreadSafeFunction<Shared, Event, CallJs>;

struct Shared {
  std::mutex mu;
  std::condition_variable cv;  // an op finished
  bool tsfn_alive = true;      // guarded by mu; false once the TSFN is finalized
  Tsfn tsfn;
  Endpoint *owner = nullptr;   // JS thread only; null once the wrapper is gone

  // From any thread. Drops the event when the TSFN is gone (environment
  // shutdown): there is no JS left to tell.
  void Post(EventKind kind, const Op *op = nullptr) {
    auto *ev = new Event{kind, op};
    std::lock_guard<std::mutex> g(mu);
    if (!tsfn_alive || tsfn.NonBlockingCall(ev) != napi_ok) delete ev;
  }

  // Called by an op's thread as its last step. The result is queued before
  // anyone waiting in CancelUntilFinished() can see `finished`, so a waiter's
  // own result always reaches the JS thread after this one (shutdown()
  // resolves after run() has settled; release() after a canceled acquire()).
  void Finish(const std::shared_ptr<Op> &op) {
    Post(EventKind::OpDone, op.get());
    {
      std::lock_guard<std::mutex> g(mu);
      op->finished = true;
    }
    cv.notify_all();
  }

  // Blocks the calling thread until `op` finished, calling `cancel` first and
  // then every 50 ms. Repeating matters: the core's cancel/stop only affects a
  // call already running, and the op's thread may not have entered the
  // blocking call yet when we first ask.
  // With a deadline, gives up when it passes; returns whether `op` finished.
  template <typename Cancel>
  bool CancelUntilFinished(const std::shared_ptr<Op> &op, Cancel cancel,
                           std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max()) {
    std::unique_lock<std::mutex> lk(mu);
    while (!op->finished) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      lk.unlock();
      cancel();
      lk.lock();
      cv.wait_for(lk, std::chrono::milliseconds(50), [&] { return op->finished; });
    }
    return true;
  }
};

void CallJs(Napi::Env env, Napi::Function, Shared *shared, Event *ev) {
  std::unique_ptr<Event> owned(ev);
  // env is null when the TSFN drains its queue during teardown.
  if (static_cast<napi_env>(env) == nullptr || shared == nullptr || shared->owner == nullptr) return;
  try {
    shared->owner->OnEvent(env, *owned);
  } catch (const Napi::Error &e) {
    // Either JS threw (user callbacks are wrapped in lib/index.js so that
    // their exceptions resurface from a fresh tick), or the environment is
    // terminating (worker.terminate()) and no JS can run at all; then even
    // rethrowing fails, and there is nobody left to tell.
    try {
      e.ThrowAsJavaScriptException();
    } catch (...) {
    }
  }
}

// Common plumbing of the Lock and Election wrappers: the TSFN, the ops in
// flight, and keeping the process alive while busy.
template <typename T>
class Base : public Napi::ObjectWrap<T>, public Endpoint {
 public:
  explicit Base(const Napi::CallbackInfo &info, const char *resource_name) : Napi::ObjectWrap<T>(info) {
    Napi::Env env = info.Env();
    shared_ = std::make_shared<Shared>();
    // The TSFN co-owns Shared, so C threads that still hold a Shared* when
    // the wrapper is gone post into something valid.
    auto *keep = new std::shared_ptr<Shared>(shared_);
    shared_->tsfn = Tsfn::New(
        env, resource_name, 0, 1, shared_.get(),
        [](Napi::Env, std::shared_ptr<Shared> *keep, Shared *shared) {
          {
            std::lock_guard<std::mutex> g(shared->mu);
            shared->tsfn_alive = false;
          }
          delete keep;
        },
        keep);
    // Idle handles must not keep the process alive.
    shared_->tsfn.Unref(env);
    shared_->owner = this;
    registry_ = *env.GetInstanceData<RegistryPtr>();
    registry_->live.insert(this);
  }

  // Also runs when the derived constructor throws (bad name, ...): the TSFN
  // and the registry entry must not outlive the object then either.
  ~Base() override { Detach(); }

  bool IsActive() const override { return active_; }

 protected:
  using OpPtr = std::shared_ptr<Op>;

  // The JS function events are delivered to, stored on the wrapper object
  // itself (a plain JS reference, so the GC sees any cycle through it).
  void SetEmitter(Napi::Env env, const Napi::Value &emit) {
    if (!emit.IsFunction()) throw Napi::TypeError::New(env, "internal: emit must be a function");
    this->Value().DefineProperty(Napi::PropertyDescriptor::Value("emit", emit, napi_default));
  }

  void Emit(Napi::Env env, const char *event) {
    Napi::Function emit = this->Value().Get("emit").template As<Napi::Function>();
    emit.Call(this->Value(), {Napi::String::New(env, event)});
  }

  // Starts `work(Op&)` on a thread of its own; returns the op's promise.
  template <typename Work>
  OpPtr StartOp(Napi::Env env, Op::Kind kind, Work work) {
    auto op = std::make_shared<Op>(env, kind);
    std::shared_ptr<Shared> shared = shared_;
    try {
      op->thread = std::thread([op, shared, work]() mutable {
        work(*op);
        shared->Finish(op);
      });
    } catch (const std::system_error &e) {
      throw Napi::Error::New(env, std::string("cannot start a thread for a metaparticle call: ") + e.what());
    }
    ops_.push_back(op);
    UpdateActive(env);
    return op;
  }

  // Removes a finished op (after joining its thread); null if not ours.
  OpPtr TakeOp(const Op *raw) {
    auto it = std::find_if(ops_.begin(), ops_.end(), [&](const OpPtr &p) { return p.get() == raw; });
    if (it == ops_.end()) return nullptr;
    OpPtr op = *it;
    ops_.erase(it);
    if (op->thread.joinable()) op->thread.join();  // it has finished: returns at once
    return op;
  }

  void Settle(Napi::Env env, Op &op) {
    if (op.rc == MP_OK) {
      op.deferred.Resolve(env.Undefined());
    } else {
      op.deferred.Reject(MakeError(env, op.failure).Value());
    }
  }

  // Ref the TSFN and the JS object while busy; unref when idle.
  void UpdateActive(Napi::Env env) {
    bool want = static_cast<T *>(this)->Busy() || !ops_.empty();
    if (want == active_) return;
    active_ = want;
    if (shared_->tsfn_alive) {  // written only on this thread
      if (want) {
        shared_->tsfn.Ref(env);
      } else {
        shared_->tsfn.Unref(env);
      }
    }
    if (want) {
      this->Ref();
    } else {
      this->Unref();
    }
  }

  // For Close(): make every op's blocking call return and join the threads.
  // Bounded, because it runs at exit and in finalizers: a call that does not
  // return in time (the core could not reach the sidecar to release, say)
  // has its thread detached, and false is returned: the C handle is then
  // still in use and must not be freed.
  template <typename Cancel>
  bool StopOps(Cancel cancel) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kCloseTimeoutSeconds);
    bool all = true;
    for (auto &op : ops_) {
      if (shared_->CancelUntilFinished(op, cancel, deadline)) {
        if (op->thread.joinable()) op->thread.join();
      } else {
        all = false;
        if (op->thread.joinable()) op->thread.detach();  // it holds its own references
      }
    }
    ops_.clear();
    return all;
  }

  // Longer than any single sidecar request of a release (5 s) or stop.
  static constexpr int kCloseTimeoutSeconds = 15;

  // After the C handle is freed (no more callbacks).
  void Detach() {
    if (registry_) registry_->live.erase(this);
    shared_->owner = nullptr;
    bool alive;
    {
      std::lock_guard<std::mutex> g(shared_->mu);
      alive = shared_->tsfn_alive;
    }
    if (alive) shared_->tsfn.Abort();
  }

  std::shared_ptr<Shared> shared_;
  RegistryPtr registry_;
  std::list<OpPtr> ops_;
  bool active_ = false;
};

std::string OptString(const Napi::Object &opts, const char *key) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::string();
  if (!v.IsString()) throw Napi::TypeError::New(opts.Env(), std::string("option ") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

unsigned OptUnsigned(const Napi::Object &opts, const char *key) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined() || v.IsNull()) return 0;
  if (!v.IsNumber()) throw Napi::TypeError::New(opts.Env(), std::string("option ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(opts.Env(), std::string("option ") + key + " must be a non-negative integer");
  return static_cast<unsigned>(d);
}

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

// new Lock(name, {sidecarUrl, owner, ttlSeconds, exitOnLost}, emit)
// emit('acquired') after lockAsync(); emit('lost') when a held lock is lost.
class Lock : public Base<Lock> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Lock",
                       {
                           InstanceMethod<&Lock::LockAsync>("lockAsync"),
                           InstanceMethod<&Lock::Acquire>("acquire"),
                           InstanceMethod<&Lock::Release>("release"),
                           InstanceAccessor<&Lock::Held>("held"),
                           InstanceAccessor<&Lock::Acquiring>("acquiring"),
                           InstanceAccessor<&Lock::Token>("token"),
                           InstanceAccessor<&Lock::Name>("name"),
                           InstanceAccessor<&Lock::Owner>("owner"),
                       });
  }

  explicit Lock(const Napi::CallbackInfo &info) : Base<Lock>(info, "metaparticle.Lock") {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject())
      throw Napi::TypeError::New(env, "internal: Lock(name, options, emit)");
    SetEmitter(env, info[2]);
    std::string name = info[0].As<Napi::String>().Utf8Value();
    Napi::Object o = info[1].As<Napi::Object>();
    std::string sidecar = OptString(o, "sidecarUrl");
    std::string owner = OptString(o, "owner");

    mp_lock_options opts = MP_LOCK_OPTIONS_INIT;
    opts.sidecar_url = sidecar.empty() ? nullptr : sidecar.c_str();
    opts.owner = owner.empty() ? nullptr : owner.c_str();
    opts.ttl_seconds = OptUnsigned(o, "ttlSeconds");
    // Without a JS onLost handler the core's documented default applies:
    // print why and exit(1), because a program that believes it holds a lost
    // lock is unsafe.
    if (!o.Get("exitOnLost").ToBoolean().Value()) {
      opts.on_lost = &Lock::OnLostC;
      opts.user_data = shared_.get();
    }
    int rc = mp_lock_create(&handle_, name.c_str(), &opts);
    if (rc != MP_OK) ThrowLast(env, rc);
    name_ = mp_lock_name(handle_);
    owner_ = mp_lock_owner(handle_);
  }

  ~Lock() override { Close(); }

  void CancelForExit() override {
    if (handle_ != nullptr) mp_lock_cancel(handle_);
  }
  void CloseForExit() override { Close(); }

  bool Busy() const { return mode_ != Mode::Idle; }

  void OnEvent(Napi::Env env, const Event &ev) override {
    switch (ev.kind) {
      case EventKind::LockAcquired:
        // Dropped when release() came first: the caller gave the lock up.
        if (mode_ != Mode::Pending) return;
        mode_ = Mode::Held;
        Emit(env, "acquired");
        return;
      case EventKind::LockLost:
        if (mode_ == Mode::Held) {
          mode_ = Mode::Idle;
          UpdateActive(env);
          Emit(env, "lost");
        } else if (acquire_op_) {
          // The loss overtook the acquire's own result; report it after.
          acquire_op_->lost_early = true;
        }
        // Releasing: the caller is giving it up anyway. Idle: stale.
        return;
      case EventKind::OpDone:
        OnOpDone(env, ev.op);
        return;
      default:
        return;
    }
  }

 private:
  enum class Mode { Idle, Pending, Held, Releasing };

  // Blocking: cancels waits, joins our threads, releases if held, frees.
  void Close() {
    if (handle_ == nullptr) return;
    // Acquires still waiting are canceled (a busy wrapper is strongly
    // referenced, so this happens only at exit).
    if (StopOps([h = handle_] { mp_lock_cancel(h); })) {
      mp_lock_free(handle_);  // releases if held; no callback runs after this
    } else {
      std::fprintf(stderr,
                   "metaparticle: lock '%s': a call into the library did not return within %d s while closing; "
                   "leaving the handle (the lock frees at its TTL)\n",
                   name_.c_str(), kCloseTimeoutSeconds);
    }
    handle_ = nullptr;
    mode_ = Mode::Idle;
    acquire_op_.reset();
  }

  mp_lock *Handle(Napi::Env env) {
    if (handle_ == nullptr) throw MakeError(env, Failure{MP_ESTATE, "the lock was closed at process exit"});
    return handle_;
  }

  static void OnAcquiredC(mp_lock *, void *ud) { static_cast<Shared *>(ud)->Post(EventKind::LockAcquired); }
  static void OnLostC(mp_lock *, void *ud) { static_cast<Shared *>(ud)->Post(EventKind::LockLost); }

  void OnOpDone(Napi::Env env, const Op *raw) {
    OpPtr op = TakeOp(raw);
    if (!op) return;
    bool emit_lost = false;
    if (op->kind == Op::Kind::Acquire) {
      if (acquire_op_ == op) acquire_op_.reset();
      if (op->rc == MP_OK && op->superseded) {
        // release() was called while we waited; its thread gives the lock
        // back, so this acquire must not report success.
        op->rc = MP_ECANCELED;
        op->failure = Failure{MP_ECANCELED, "acquiring lock '" + name_ +
                                                "' was canceled by release()"};
      }
      if (op->rc == MP_OK) {
        if (op->lost_early) {
          emit_lost = true;
        } else {
          mode_ = Mode::Held;
        }
        op->deferred.Resolve(op->has_token ? Napi::Number::New(env, static_cast<double>(op->token))
                                           : env.Null());
      } else {
        Settle(env, *op);
      }
    } else if (op->kind == Op::Kind::Release) {
      // Locally the lock is given up whatever the outcome (renewals stopped);
      // an error means the sidecar could not be told, so it frees at its TTL.
      mode_ = Mode::Idle;
      if (op->rc == MP_OK || op->rc == MP_ENOTHELD) {
        op->deferred.Resolve(Napi::Boolean::New(env, op->rc == MP_OK));
      } else {
        Settle(env, *op);
      }
    }
    UpdateActive(env);
    if (emit_lost) Emit(env, "lost");
  }

  // lockAsync(): the seed lock() shape. Returns at once; emit('acquired')
  // follows once held.
  Napi::Value LockAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    mp_lock *h = Handle(env);
    RejectWhileBusy(env);
    int rc = mp_lock_lock_async(h, &Lock::OnAcquiredC, shared_.get());
    if (rc != MP_OK) ThrowLast(env, rc);
    mode_ = Mode::Pending;
    UpdateActive(env);
    return env.Undefined();
  }

  // acquire(timeoutMs) -> Promise<token>; timeoutMs < 0 waits forever.
  Napi::Value Acquire(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    mp_lock *h = Handle(env);
    RejectWhileBusy(env);
    int timeout_ms = -1;
    if (info.Length() > 0 && info[0].IsNumber()) timeout_ms = info[0].As<Napi::Number>().Int32Value();
    OpPtr op = StartOp(env, Op::Kind::Acquire, [h, timeout_ms](Op &op) {
      op.rc = mp_lock_acquire(h, timeout_ms);
      if (op.rc != MP_OK) {
        op.failure = CaptureFailure(op.rc);
        return;
      }
      op.has_token = mp_lock_token(h, &op.token) == MP_OK;
    });
    acquire_op_ = op;
    return op->deferred.Promise();
  }

  // release() -> Promise<boolean>: true if something was given up (a hold, a
  // pending lockAsync, or an acquire() in flight, which then rejects with
  // MP_ECANCELED), false if there was nothing to give up. Rejects when the
  // sidecar could not be told.
  Napi::Value Release(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    mp_lock *h = Handle(env);
    OpPtr acquiring = acquire_op_;
    if (acquiring) acquiring->superseded = true;
    mode_ = Mode::Releasing;
    std::shared_ptr<Shared> shared = shared_;
    OpPtr op = StartOp(env, Op::Kind::Release, [h, acquiring, shared](Op &op) {
      if (acquiring) shared->CancelUntilFinished(acquiring, [h] { mp_lock_cancel(h); });
      op.rc = mp_lock_release(h);
      if (op.rc != MP_OK) op.failure = CaptureFailure(op.rc);
      // An acquire() we canceled counts as something given up.
      if (op.rc == MP_ENOTHELD && acquiring) op.rc = MP_OK;
    });
    return op->deferred.Promise();
  }

  // The core would accept a new acquisition once a release's C call has
  // returned, but our mode bookkeeping (settled when the release's result
  // reaches this thread) would then be wrong; the JS layer waits for
  // release() before starting another acquisition, so this only catches
  // misuse of the native object.
  void RejectWhileBusy(Napi::Env env) {
    const char *why = nullptr;
    if (mode_ == Mode::Releasing) why = "' is being released; wait for release() first";
    if (acquire_op_) why = "' is already being acquired by this handle";
    if (why) throw MakeError(env, Failure{MP_ESTATE, "lock '" + name_ + why});
  }

  // True while an acquire() has not settled yet.
  Napi::Value Acquiring(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), static_cast<bool>(acquire_op_));
  }

  Napi::Value Held(const Napi::CallbackInfo &info) {
    int held = 0;
    if (handle_ == nullptr) return Napi::Boolean::New(info.Env(), false);
    int rc = mp_lock_is_held(handle_, &held);
    if (rc != MP_OK) ThrowLast(info.Env(), rc);
    return Napi::Boolean::New(info.Env(), held != 0);
  }

  // The fencing token of the current hold, or null when not held. A Number:
  // tokens count acquisitions and stay far below 2^53.
  Napi::Value Token(const Napi::CallbackInfo &info) {
    uint64_t token = 0;
    if (handle_ == nullptr) return info.Env().Null();
    int rc = mp_lock_token(handle_, &token);
    if (rc == MP_ENOTHELD) return info.Env().Null();
    if (rc != MP_OK) ThrowLast(info.Env(), rc);
    return Napi::Number::New(info.Env(), static_cast<double>(token));
  }

  Napi::Value Name(const Napi::CallbackInfo &info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value Owner(const Napi::CallbackInfo &info) { return Napi::String::New(info.Env(), owner_); }

  mp_lock *handle_ = nullptr;
  std::string name_, owner_;
  Mode mode_ = Mode::Idle;
  OpPtr acquire_op_;  // the acquire() in flight, if any
};

// ---------------------------------------------------------------------------
// Election
// ---------------------------------------------------------------------------

// new Election(name, {sidecarUrl, identity, ttlSeconds}, emit)
// emit('leader') / emit('lost') while run() is in progress.
class Election : public Base<Election> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Election",
                       {
                           InstanceMethod<&Election::Run>("run"),
                           InstanceMethod<&Election::Shutdown>("shutdown"),
                           InstanceMethod<&Election::Leader>("leader"),
                           InstanceAccessor<&Election::IsLeader>("isLeader"),
                           InstanceAccessor<&Election::Running>("running"),
                       });
  }

  explicit Election(const Napi::CallbackInfo &info) : Base<Election>(info, "metaparticle.Election") {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject())
      throw Napi::TypeError::New(env, "internal: Election(name, options, emit)");
    SetEmitter(env, info[2]);
    std::string name = info[0].As<Napi::String>().Utf8Value();
    Napi::Object o = info[1].As<Napi::Object>();
    std::string sidecar = OptString(o, "sidecarUrl");
    std::string identity = OptString(o, "identity");

    mp_election_options opts = MP_ELECTION_OPTIONS_INIT;
    opts.sidecar_url = sidecar.empty() ? nullptr : sidecar.c_str();
    opts.identity = identity.empty() ? nullptr : identity.c_str();
    opts.ttl_seconds = OptUnsigned(o, "ttlSeconds");
    opts.on_leader = &Election::OnLeaderC;
    opts.on_lost = &Election::OnLostC;
    opts.user_data = shared_.get();
    int rc = mp_election_create(&handle_, name.c_str(), &opts);
    if (rc != MP_OK) ThrowLast(env, rc);
    name_ = name;
  }

  ~Election() override { Close(); }

  void CancelForExit() override {
    if (handle_ != nullptr) mp_election_stop(handle_);
  }
  void CloseForExit() override { Close(); }

  bool Busy() const { return static_cast<bool>(run_op_); }

  void OnEvent(Napi::Env env, const Event &ev) override {
    switch (ev.kind) {
      case EventKind::Leader:
      case EventKind::LeaderLost:
        // After shutdown() the caller has stopped listening: "I am the
        // leader" from a run that is being stopped would only mislead.
        if (!run_op_ || stopping_) return;
        Emit(env, ev.kind == EventKind::Leader ? "leader" : "lost");
        return;
      case EventKind::OpDone:
        OnOpDone(env, ev.op);
        return;
      default:
        return;
    }
  }

 private:
  // Blocking: stops run() (which gives leadership up), joins our threads, frees.
  void Close() {
    if (handle_ == nullptr) return;
    if (StopOps([h = handle_] { mp_election_stop(h); })) {
      mp_election_free(handle_);  // gives leadership up if held
    } else {
      std::fprintf(stderr,
                   "metaparticle: election '%s': run() did not return within %d s while closing; leaving the "
                   "handle (leadership frees at its TTL)\n",
                   name_.c_str(), kCloseTimeoutSeconds);
    }
    handle_ = nullptr;
    run_op_.reset();
  }

  mp_election *Handle(Napi::Env env) {
    if (handle_ == nullptr) throw MakeError(env, Failure{MP_ESTATE, "the election was closed at process exit"});
    return handle_;
  }

  static void OnLeaderC(mp_election *, void *ud) { static_cast<Shared *>(ud)->Post(EventKind::Leader); }
  static void OnLostC(mp_election *, void *ud) { static_cast<Shared *>(ud)->Post(EventKind::LeaderLost); }

  void OnOpDone(Napi::Env env, const Op *raw) {
    OpPtr op = TakeOp(raw);
    if (!op) return;
    if (op->kind == Op::Kind::Run) {
      if (run_op_ == op) {
        run_op_.reset();
        stopping_ = false;
      }
      Settle(env, *op);
    } else if (op->kind == Op::Kind::Leader) {
      if (op->rc == MP_OK) {
        op->deferred.Resolve(op->has_leader ? Napi::String::New(env, op->leader) : env.Null());
      } else {
        Settle(env, *op);
      }
    } else {
      Settle(env, *op);
    }
    UpdateActive(env);
  }

  // run() -> Promise<void>, settled when the election stops (shutdown()).
  Napi::Value Run(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (run_op_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Reject(MakeError(env, Failure{MP_ESTATE, "election is already running"}).Value());
      return d.Promise();
    }
    mp_election *h = Handle(env);
    OpPtr op = StartOp(env, Op::Kind::Run, [h](Op &op) {
      op.rc = mp_election_run(h);
      if (op.rc != MP_OK) op.failure = CaptureFailure(op.rc);
    });
    run_op_ = op;
    stopping_ = false;
    UpdateActive(env);
    return op->deferred.Promise();
  }

  // shutdown() -> Promise<void>, resolved once run() has returned and
  // leadership (if held) was given up. mp_election_stop() only takes a mutex,
  // but waiting for run() to return must happen off the event loop.
  Napi::Value Shutdown(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    mp_election *h = Handle(env);
    int rc = mp_election_stop(h);
    if (rc != MP_OK) ThrowLast(env, rc);
    if (!run_op_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    stopping_ = true;
    OpPtr running = run_op_;
    std::shared_ptr<Shared> shared = shared_;
    // Repeat the stop until run() returns: a stop that lands before the run
    // thread has entered mp_election_run() would otherwise be missed.
    OpPtr op = StartOp(env, Op::Kind::Stop, [h, running, shared](Op &) {
      shared->CancelUntilFinished(running, [h] { mp_election_stop(h); });
    });
    return op->deferred.Promise();
  }

  // leader() -> Promise<string|null>: the current leader as the sidecar sees it.
  Napi::Value Leader(const Napi::CallbackInfo &info) {
    mp_election *h = Handle(info.Env());
    OpPtr op = StartOp(info.Env(), Op::Kind::Leader, [h](Op &op) {
      char *who = nullptr;
      op.rc = mp_election_leader(h, &who);
      if (op.rc != MP_OK) {
        op.failure = CaptureFailure(op.rc);
        return;
      }
      if (who != nullptr) {
        op.leader = who;
        op.has_leader = true;
        mp_free(who);
      }
    });
    return op->deferred.Promise();
  }

  Napi::Value IsLeader(const Napi::CallbackInfo &info) {
    int leader = 0;
    if (handle_ == nullptr) return Napi::Boolean::New(info.Env(), false);
    int rc = mp_election_is_leader(handle_, &leader);
    if (rc != MP_OK) ThrowLast(info.Env(), rc);
    return Napi::Boolean::New(info.Env(), leader != 0);
  }

  Napi::Value Running(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), static_cast<bool>(run_op_));
  }

  mp_election *handle_ = nullptr;
  std::string name_;
  OpPtr run_op_;
  bool stopping_ = false;
};

// ---------------------------------------------------------------------------
// Module
// ---------------------------------------------------------------------------

// closeAll(): for process.on('exit'): gives up every held lock and
// leadership of this environment now (blocking; the process is ending).
Napi::Value CloseAll(const Napi::CallbackInfo &info) {
  RegistryPtr registry = *info.Env().GetInstanceData<RegistryPtr>();
  std::set<Endpoint *> busy;
  for (Endpoint *e : registry->live) {
    if (e->IsActive()) busy.insert(e);
  }
  // Stop every wait first, so that a lock given up below is not handed to
  // another waiter of this same process only to be released again.
  for (Endpoint *e : busy) e->CancelForExit();
  for (Endpoint *e : busy) e->CloseForExit();
  return info.Env().Undefined();
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<RegistryPtr>(new RegistryPtr(std::make_shared<Registry>()));
  exports.Set("closeAll", Napi::Function::New(env, CloseAll, "closeAll"));
  exports.Set("Lock", Lock::Init(env));
  exports.Set("Election", Election::Init(env));
  exports.Set("version", Napi::String::New(env, mp_version()));
  exports.Set("headerVersion", Napi::String::New(env, MP_VERSION_STRING));
  // Error codes by name, from the library itself.
  Napi::Object codes = Napi::Object::New(env);
  for (int code = MP_OK; code >= MP_ELIMIT; --code) codes.Set(mp_error_name(code), Napi::Number::New(env, code));
  exports.Set("codes", codes);
  return exports;
}

}  // namespace

NODE_API_MODULE(metaparticle_sync, InitModule)
