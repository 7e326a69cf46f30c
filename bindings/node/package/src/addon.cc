// metaparticle_package.node: a thin Node-API layer over libmetaparticle's
// Package C ABI (mp_in_container, mp_containerize, mp_containerize_render in
// include/metaparticle.h). It only translates: JSON text in, JSON text or an
// exit code out, MP_* codes to Error objects. All logic lives in the C++ core.
//
// mp_containerize blocks outside a container (build, push, run, stream logs
// until SIGINT/SIGTERM), so it runs on a thread of its own (not libuv's
// shared pool) and settles a Promise on the JS thread through a
// ThreadSafeFunction. Inside a container the JS side calls the JS main
// function itself; the addon only validates the options there.
#include <napi.h>

#include <metaparticle.h>

#include <memory>
#include <string>
#include <thread>

namespace {

struct Failure {
  int code = MP_OK;
  std::string message;
};

Failure Capture(int rc) {
  const char *m = mp_error_last();
  return Failure{rc, m ? m : ""};
}

Napi::Error MakeError(Napi::Env env, const Failure &f) {
  std::string message = f.message.empty() ? std::string(mp_error_name(f.code)) : f.message;
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, mp_error_name(f.code)));
  err.Set("errno", Napi::Number::New(env, f.code));
  return err;
}

std::string OptionsArg(const Napi::CallbackInfo &info) {
  if (info.Length() < 1 || !info[0].IsString())
    throw Napi::TypeError::New(info.Env(), "options must be a JSON string");
  return info[0].As<Napi::String>().Utf8Value();
}

Napi::Value InContainer(const Napi::CallbackInfo &info) {
  int inside = 0;
  int rc = mp_in_container(&inside);
  if (rc != MP_OK) throw MakeError(info.Env(), Capture(rc));
  return Napi::Boolean::New(info.Env(), inside != 0);
}

Napi::Value Render(const Napi::CallbackInfo &info) {
  std::string opts = OptionsArg(info);
  char *out = nullptr;
  int rc = mp_containerize_render(opts.c_str(), &out);
  if (rc != MP_OK) throw MakeError(info.Env(), Capture(rc));
  Napi::String s = Napi::String::New(info.Env(), out ? out : "");
  mp_free(out);
  return s;
}

int ReturnZero(void *) { return 0; }

// Inside a container: validate the options the way mp_containerize does
// (it then calls main_fn, a no-op here: the JS main runs afterwards).
Napi::Value ValidateInside(const Napi::CallbackInfo &info) {
  std::string opts = OptionsArg(info);
  int exit_code = 0;
  int rc = mp_containerize(opts.c_str(), ReturnZero, nullptr, &exit_code);
  if (rc != MP_OK) throw MakeError(info.Env(), Capture(rc));
  return info.Env().Undefined();
}

struct Result {
  Failure failure;
  int exit_code = 0;
};

// Outside: run mp_containerize on its own thread; resolve with the exit code.
Napi::Value Containerize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string opts = OptionsArg(info);
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo &) {}),
                                            "mp_containerize", 0, 1);
  std::thread([opts = std::move(opts), deferred, tsfn]() mutable {
    auto result = std::make_shared<Result>();
    // The program's main never runs here: the JS side only calls this outside.
    int rc = mp_containerize(opts.c_str(), ReturnZero, nullptr, &result->exit_code);
    if (rc != MP_OK) result->failure = Capture(rc);
    tsfn.BlockingCall([deferred, result](Napi::Env env, Napi::Function) {
      if (result->failure.code != MP_OK)
        deferred->Reject(MakeError(env, result->failure).Value());
      else
        deferred->Resolve(Napi::Number::New(env, result->exit_code));
    });
    tsfn.Release();
  }).detach();
  return deferred->Promise();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("inContainer", Napi::Function::New(env, InContainer));
  exports.Set("render", Napi::Function::New(env, Render));
  exports.Set("validateInside", Napi::Function::New(env, ValidateInside));
  exports.Set("containerize", Napi::Function::New(env, Containerize));
  exports.Set("version", Napi::String::New(env, mp_version()));
  return exports;
}

}  // namespace

NODE_API_MODULE(metaparticle_package, Init)
