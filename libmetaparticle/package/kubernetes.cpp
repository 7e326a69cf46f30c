// Placeholder of the Kubernetes runner: see kubernetes.h.
#include "package/kubernetes.h"

#include "common/error.h"

namespace mp::package {

void kubernetes_preflight(const Options &) {
    throw Error(MP_ERROR,
                "the Kubernetes runner (\"runner\": \"metaparticle\"/\"kubernetes\") is not available in this build yet; "
                "use \"runner\": \"docker\", or \"dryRun\": true to see the image");
}

json::Ptr render_kubernetes_objects(const Options &, const std::string &) {
    // Empty until the Kubernetes runner lands; the "kubernetes" key stays in
    // the render output so callers can already read it.
    return json::array();
}

int run_kubernetes(const Options &, const Image &, const std::function<void(const std::string &)> &,
                   const std::atomic<bool> &) {
    throw Error(MP_ERROR,
                "the Kubernetes runner (\"runner\": \"metaparticle\"/\"kubernetes\") is not available in this build yet; "
                "use \"runner\": \"docker\", or \"dryRun\": true to see the image");
}

}  // namespace mp::package
