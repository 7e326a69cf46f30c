#include "package/containerize.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/error.h"
#include "json/json.h"
#include "package/base_image.h"
#include "package/docker_runner.h"
#include "package/image.h"
#include "package/kubernetes.h"
#include "package/options.h"
#include "package/progress.h"
#include "package/registry.h"
#include "package/render.h"
#include "package/yaml_out.h"

namespace mp::package {
namespace {

std::atomic<bool> g_interrupted{false};
struct sigaction g_old_int, g_old_term;

// First SIGINT/SIGTERM: ask the runner to tear down. A second one restores
// the previous handlers and re-raises, so a stuck teardown can still be
// aborted with another Ctrl-C. Only async-signal-safe calls here.
extern "C" void on_signal(int sig) {
    if (g_interrupted.exchange(true)) {
        sigaction(SIGINT, &g_old_int, nullptr);
        sigaction(SIGTERM, &g_old_term, nullptr);
        raise(sig);
    }
}

class SignalScope {
public:
    SignalScope() {
        g_interrupted = false;
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;  // other threads' blocking calls carry on
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &g_old_int);
        sigaction(SIGTERM, &sa, &g_old_term);
    }
    ~SignalScope() {
        sigaction(SIGINT, &g_old_int, nullptr);
        sigaction(SIGTERM, &g_old_term, nullptr);
    }
};

std::mutex g_running;  // one containerize() at a time per process (signals are process-wide)

}  // namespace

bool in_container() {
    const char *v = std::getenv("METAPARTICLE_IN_CONTAINER");
    if (!v) return false;
    std::string s = v;
    for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s == "true" || s == "1";
}

int containerize(const std::string &options_json, const std::function<int()> &main_fn) {
    Options o = parse_options(options_json);
    if (in_container()) return main_fn();

    std::unique_lock<std::mutex> lk(g_running, std::try_to_lock);
    if (!lk.owns_lock()) throw Error(MP_ESTATE, "containerize is already running in this process");

    // Progress: a bar on a terminal, periodic lines otherwise, nothing when quiet.
    std::unique_ptr<ProgressPrinter> progress;
    if (!o.quiet) progress = std::make_unique<ProgressPrinter>(::isatty(STDERR_FILENO) == 1);
    auto log = [&o, &progress](const std::string &m) {
        if (o.quiet) return;
        if (progress) progress->clear();
        std::fprintf(stderr, "containerize: %s\n", m.c_str());
    };
    if (o.dry_run) {
        BuildSettings s;
        s.cache_dir = default_layer_cache_dir();
        Image img = build_image(o, s);
        for (const auto &w : img.warnings) log("warning: " + w);
        auto out = render_all(o, img);
        // YAML that `kubectl apply -f -` takes; the image config rides along
        // in comments.
        std::string text = dry_run_yaml(out.get(), img.warnings);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return 0;
    }

    // Install the handlers before the (possibly long) build and push, so a
    // Ctrl-C during them is not lost; the runner checks the flag first.
    SignalScope signals;
    if (o.runner == Runner::Docker) docker_preflight();
    else kubernetes_preflight(o);
    BuildSettings s;
    s.log = log;
    if (progress) s.progress = progress->fn();
    // Layers built by earlier runs are reused from the user's cache dir:
    // rebuilding the libraries layer on every start would dominate.
    s.cache_dir = default_layer_cache_dir();
    Image img = build_image(o, s);
    for (const auto &w : img.warnings) log("warning: " + w);
    if (g_interrupted) return 0;
    if (o.publish) push_image(img, log, progress ? progress->fn() : ProgressFn{});
    if (g_interrupted) return 0;
    if (o.runner == Runner::Kubernetes) return run_kubernetes(o, img, log, g_interrupted);
    // docker load needs every layer; a pull (publish) gets them from the registry.
    if (!o.publish && !img.base_reference.empty()) fetch_base_layers(img, log);
    if (g_interrupted) return 0;
    return run_docker(o, img, log, g_interrupted);
}

std::string containerize_render(const std::string &options_json) {
    Options o = parse_options(options_json);
    // The digests need the layers; those of earlier runs come from the cache.
    BuildSettings s;
    s.cache_dir = default_layer_cache_dir();
    Image img = build_image(o, s);
    auto out = render_all(o, img);
    // Always present (possibly empty), so every binding returns the same keys.
    auto w = json::array();
    for (const auto &s : img.warnings) cJSON_AddItemToArray(w.get(), cJSON_CreateString(s.c_str()));
    json::set(out.get(), "warnings", std::move(w));
    return json::print(out.get());
}

}  // namespace mp::package
