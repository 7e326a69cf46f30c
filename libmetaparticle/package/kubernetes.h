// The Kubernetes runner ("runner": "metaparticle" / "kubernetes"), built on
// kube/ (the project's one Kubernetes client). containerize() and render call
// only the three functions at the top; the rest is shared with the runner's
// own files (kube_runner.cpp, kube_pods.cpp) and the tests.
//
// What it creates (render_kubernetes_objects), in apply order, every object
// and pod labelled app.kubernetes.io/name=<name> and
// app.kubernetes.io/managed-by=metaparticle:
//   - a v1 Service <name> when there are "ports": type LoadBalancer when
//     "public", else ClusterIP; one port "tcp-<p>" per port (p -> p);
//   - an apps/v1 Deployment <name> with "replicas" pods, or, for "jobSpec",
//     a batch/v1 Job <name> (completions = parallelism = count,
//     restartPolicy Never, backoffLimit 0: each instance runs once, as with
//     the docker runner, and one failure fails the job);
//   - one container <name> per pod: the image, containerPorts, and env
//     METAPARTICLE_IN_CONTAINER=true followed by the options' "env".
//   "shardSpec" needs the shard pattern (StatefulSet + headless Service +
//   router), which does not exist yet: rendering it for the Kubernetes runner
//   is an error.
//
// The runner (run_kubernetes): server-side apply of each object
// (fieldManager=metaparticle, force=true, so an earlier run's objects are
// updated), rollout wait with clear errors (image pull failures, crash
// loops, a deadline), pod logs prefixed "[<pod>] " on stdout, then teardown
// (foreground deletion) unless keepRunning. See kube_runner.cpp.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "json/json.h"
#include "package/image.h"
#include "package/options.h"

namespace mp::package {

// Labels on everything the Kubernetes runner creates (the recommended
// Kubernetes labels; the pods are selected by both).
constexpr const char *kKubeLabelName = "app.kubernetes.io/name";
constexpr const char *kKubeLabelManagedBy = "app.kubernetes.io/managed-by";
constexpr const char *kKubeManagedByValue = "metaparticle";

// Called before the image is built and pushed: fail early instead of after a
// push. Throws Error(MP_EINVAL) for shardSpec (not implemented) and when
// "publish" is not set (a cluster can only run an image it can pull, and the
// image is built in memory: without a push it exists nowhere the cluster
// could find it); and, with a message naming the API server and the
// kubeconfig, when the cluster configuration cannot be loaded, the API
// server does not answer GET /version (unreachable, TLS, credentials), or the
// namespace does not exist.
void kubernetes_preflight(const Options &o);

// The objects the runner applies, in apply order, as a JSON array (what
// dryRun prints and mp_containerize_render returns under "kubernetes").
// `image_reference` is what the pods run (see kubernetes_image()).
// metadata.namespace is set only when the options name a namespace (the
// runner fills in the resolved one: the kubeconfig context's, or "default"),
// so rendering never reads the cluster configuration.
json::Ptr render_kubernetes_objects(const Options &o, const std::string &image_reference);

// What the pods run: the pushed reference pinned to the manifest digest
// ("repo/name:tag@sha256:..."), so a rebuilt image under the same tag rolls
// the pods, and every pod runs exactly the bytes that were pushed.
std::string kubernetes_image(const Image &image);

// Apply the objects, follow the pods' logs (prefix "[pod] "), until the job
// finishes or `interrupted` is set; then delete them unless keepRunning.
// Returns the process exit code containerize reports: 0 when interrupted or
// when the job succeeded, 1 when the job failed. Throws (after deleting what
// it applied, unless keepRunning) when the rollout fails: MP_EREGISTRY when
// the cluster cannot pull the image, MP_ERROR for a crash loop, MP_ETIMEOUT
// when the rollout does not finish within the deadline (5 minutes, or
// $METAPARTICLE_ROLLOUT_TIMEOUT seconds). `log` takes progress lines (already
// filtered by "quiet").
int run_kubernetes(const Options &o, const Image &image, const std::function<void(const std::string &)> &log,
                   const std::atomic<bool> &interrupted);

}  // namespace mp::package
