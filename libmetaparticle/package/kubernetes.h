// Hook for the Kubernetes runner ("runner": "metaparticle" / "kubernetes").
//
// The Kubernetes runner (server-side apply of a Deployment + Service, a
// StatefulSet + headless Service + router for shardSpec, a batch/v1 Job for
// jobSpec; rollout wait, pod logs, delete on teardown; see SPEC section 7) is
// written on top of kube/ (the project's one Kubernetes client). Until it
// exists, these three functions are its whole surface: containerize() and
// render call nothing else (kubernetes_preflight, render_kubernetes_objects,
// run_kubernetes), so the runner only has to replace kubernetes.cpp.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "json/json.h"
#include "package/image.h"
#include "package/options.h"

namespace mp::package {

// Called before the image is built and pushed: fail early (no cluster
// configuration, API server unreachable) instead of after a push.
void kubernetes_preflight(const Options &o);

// The objects the runner applies, in apply order, as a JSON array (what
// dryRun prints and mp_containerize_render returns under "kubernetes").
// `image_reference` is what the pods run (the pushed reference).
json::Ptr render_kubernetes_objects(const Options &o, const std::string &image_reference);

// Apply the objects, follow the pods' logs (prefix "[pod] "), until the job
// finishes or `interrupted` is set; then delete them unless keepRunning.
// Returns the process exit code containerize reports. `log` takes progress
// lines (already filtered by "quiet").
int run_kubernetes(const Options &o, const Image &image, const std::function<void(const std::string &)> &log,
                   const std::atomic<bool> &interrupted);

}  // namespace mp::package
