// The executable's side of the Kubernetes backend plugin
// (mp-sidecar-kubernetes.so; see kube_plugin_abi.h for why it is a plugin).
#pragma once

#include <memory>
#include <string>

#include "backends/backend.h"

namespace mp::sidecar {

// The environment variable naming the directory to load the plugin from,
// instead of the default places (below).
inline constexpr const char *kPluginDirEnv = "MP_SIDECAR_PLUGIN_DIR";

// Loads the plugin (once per process; it stays loaded until exit) and creates
// the backend `kind` ("kubernetes" or "lease") from it. The plugin is looked
// for in $MP_SIDECAR_PLUGIN_DIR when set, else next to the executable (the
// build tree), else in <libdir>/metaparticle relative to it (an installed
// tree: bin/mp-sidecar -> lib/metaparticle/). Throws std::runtime_error naming
// every path tried and why it failed (dlerror()) when it cannot be loaded,
// and whatever the backend's constructor reports (a kubeconfig problem, ...).
std::unique_ptr<Backend> make_kube_backend(const std::string &kind, const KubeBackendOptions &opts);

}  // namespace mp::sidecar
