// Internals of the Kubernetes runner shared by kubernetes.cpp (render,
// preflight) and kube_runner.cpp (apply, rollout, logs, teardown).
#pragma once

#include <memory>
#include <string>

#include "json/json.h"
#include "kube/client.h"
#include "package/options.h"

namespace mp::package {

// A client for the cluster containerize deploys to: the configuration
// kube::load_config() finds ($KUBECONFIG, in-cluster, ~/.kube/config), with
// the options' namespace as the explicit namespace. Throws Error(MP_EINVAL)
// saying that the Kubernetes runner needs a cluster configuration.
std::unique_ptr<kube::Client> make_kube_client(const Options &o);

// GET /version within a few seconds: throws, with a message naming the API
// server, the kubeconfig and what to check, when it does not answer 2xx.
void check_api_server(kube::Client &c);

// The objects of render_kubernetes_objects() with metadata.namespace = `ns`
// ("" = only when the options name one).
json::Ptr render_objects(const Options &o, const std::string &image, const std::string &ns);

// The resource type of an object we render (Service, Deployment, Job).
const kube::ResourceRef &resource_of_kind(const std::string &kind);

// "app.kubernetes.io/name=<name>,app.kubernetes.io/managed-by=metaparticle"
std::string pod_label_selector(const Options &o);

// Whether `obj` carries app.kubernetes.io/managed-by=metaparticle and
// app.kubernetes.io/name=<name>.
bool managed_by_us(const cJSON *obj, const std::string &name);

}  // namespace mp::package
