// The Kubernetes runner's objects (render) and preflight. The run itself is
// in kube_runner.cpp, pod tracking and logs in kube_pods.cpp.
#include "package/kubernetes.h"

#include <cstring>

#include "common/error.h"
#include "package/kube_runner.h"

namespace mp::package {
namespace {

cJSON *add_object(cJSON *array) {
    cJSON *o = cJSON_CreateObject();
    if (!o) throw std::bad_alloc();
    cJSON_AddItemToArray(array, o);
    return o;
}

json::Ptr labels(const Options &o) {
    auto l = json::object();
    json::set_string(l.get(), kKubeLabelName, o.name);
    json::set_string(l.get(), kKubeLabelManagedBy, kKubeManagedByValue);
    return l;
}

json::Ptr metadata(const Options &o, const std::string &ns) {
    auto m = json::object();
    json::set_string(m.get(), "name", o.name);
    if (!ns.empty()) json::set_string(m.get(), "namespace", ns);
    json::set(m.get(), "labels", labels(o));
    return m;
}

// Port names must be IANA service names (at most 15 characters, a letter
// among them): "tcp-65535" always fits. Naming them is required as soon as a
// Service has more than one port, so every port gets one.
std::string port_name(int p) { return "tcp-" + std::to_string(p); }

json::Ptr pod_template(const Options &o, const std::string &image, bool job) {
    auto t = json::object();
    json::set(json::ensure_object(t.get(), "metadata"), "labels", labels(o));
    cJSON *spec = json::ensure_object(t.get(), "spec");
    // A Job's pods must not restart in place: Never keeps each failed
    // attempt as a pod with its logs, and backoffLimit 0 (below) makes every
    // instance run once, as the docker runner does.
    if (job) json::set_string(spec, "restartPolicy", "Never");
    auto containers = json::array();
    cJSON *c = add_object(containers.get());
    json::set_string(c, "name", o.name);
    json::set_string(c, "image", image);
    // The image's ENV already says it, but the pod spec is what people read
    // (kubectl describe) and what a differently built image would lack.
    auto env = json::array();
    cJSON *e = add_object(env.get());
    json::set_string(e, "name", "METAPARTICLE_IN_CONTAINER");
    json::set_string(e, "value", "true");
    for (const auto &[k, v] : o.env) {
        cJSON *x = add_object(env.get());
        json::set_string(x, "name", k);
        json::set_string(x, "value", v);
    }
    json::set(c, "env", std::move(env));
    if (!o.ports.empty()) {
        auto ports = json::array();
        for (int p : o.ports) {
            cJSON *x = add_object(ports.get());
            json::set_string(x, "name", port_name(p));
            json::set_int(x, "containerPort", p);
            json::set_string(x, "protocol", "TCP");
        }
        json::set(c, "ports", std::move(ports));
    }
    json::set(spec, "containers", std::move(containers));
    if (!o.image_pull_secrets.empty()) {
        auto secrets = json::array();
        for (const auto &name : o.image_pull_secrets) json::set_string(add_object(secrets.get()), "name", name);
        json::set(spec, "imagePullSecrets", std::move(secrets));
    }
    return t;
}

}  // namespace

std::string pod_label_selector(const Options &o) {
    return std::string(kKubeLabelName) + "=" + o.name + "," + kKubeLabelManagedBy + "=" + kKubeManagedByValue;
}

bool managed_by_us(const cJSON *obj, const std::string &name) {
    const cJSON *l = json::path(obj, {"metadata", "labels"});
    return json::get_string(l, kKubeLabelManagedBy).value_or("") == kKubeManagedByValue &&
           json::get_string(l, kKubeLabelName).value_or("") == name;
}

const kube::ResourceRef &resource_of_kind(const std::string &kind) {
    if (kind == "Service") return kube::resources::kService;
    if (kind == "Deployment") return kube::resources::kDeployment;
    if (kind == "Job") return kube::resources::kJob;
    throw Error(MP_ERROR, "internal error: the Kubernetes runner does not handle kind " + kind);
}

json::Ptr render_objects(const Options &o, const std::string &image, const std::string &ns) {
    if (o.shards)
        throw Error(MP_EINVAL,
                    "containerize options: \"shardSpec\" needs the Kubernetes shard pattern (a StatefulSet, a headless "
                    "Service and a router), which is not implemented yet; leave \"shardSpec\" out and use \"replicas\"");
    auto out = json::array();
    const bool job = o.job_count.has_value();

    // The Service first, as kubectl orders them: pods started after it get
    // its environment variables, and clients can resolve it at once.
    // (The original runner could not deploy a program without ports; without
    // ports there is simply no Service.)
    if (!o.ports.empty()) {
        cJSON *s = add_object(out.get());
        json::set_string(s, "apiVersion", "v1");
        json::set_string(s, "kind", "Service");
        json::set(s, "metadata", metadata(o, ns));
        cJSON *spec = json::ensure_object(s, "spec");
        json::set_string(spec, "type", o.is_public ? "LoadBalancer" : "ClusterIP");
        json::set(spec, "selector", labels(o));
        auto ports = json::array();
        for (int p : o.ports) {
            cJSON *x = add_object(ports.get());
            json::set_string(x, "name", port_name(p));
            json::set_string(x, "protocol", "TCP");
            json::set_int(x, "port", p);
            json::set_int(x, "targetPort", p);
        }
        json::set(spec, "ports", std::move(ports));
    }

    cJSON *w = add_object(out.get());
    if (job) {
        json::set_string(w, "apiVersion", "batch/v1");
        json::set_string(w, "kind", "Job");
        json::set(w, "metadata", metadata(o, ns));
        cJSON *spec = json::ensure_object(w, "spec");
        json::set_int(spec, "completions", *o.job_count);
        json::set_int(spec, "parallelism", *o.job_count);
        json::set_int(spec, "backoffLimit", 0);
        // No selector: the Job controller generates one from its uid (a
        // selector of our own would need manualSelector and could match the
        // pods of an earlier Job of the same name).
        json::set(spec, "template", pod_template(o, image, true));
    } else {
        json::set_string(w, "apiVersion", "apps/v1");
        json::set_string(w, "kind", "Deployment");
        json::set(w, "metadata", metadata(o, ns));
        cJSON *spec = json::ensure_object(w, "spec");
        json::set_int(spec, "replicas", o.replicas);
        // The selector is immutable: both labels, which never change for a name.
        json::set(json::ensure_object(spec, "selector"), "matchLabels", labels(o));
        json::set(spec, "template", pod_template(o, image, false));
    }
    return out;
}

json::Ptr render_kubernetes_objects(const Options &o, const std::string &image_reference) {
    // Rendering is runner-independent (the output has a "docker" and a
    // "kubernetes" part); shardSpec is only an error where it would be used.
    if (o.shards && o.runner != Runner::Kubernetes) return json::array();
    return render_objects(o, image_reference, o.ns);
}

std::string kubernetes_image(const Image &image) {
    if (image.manifest.digest.empty()) return image.reference;
    return image.reference + "@" + image.manifest.digest;
}

// The configuration loader is shared with mp-sidecar, whose hints name its
// --kubeconfig flag; containerize has no such option (it reads KUBECONFIG),
// so those hints are reworded to what a containerize user can do.
static std::string without_kubeconfig_flag(std::string m) {
    for (const char *flag : {"pass an existing file with --kubeconfig or set KUBECONFIG", "pass --kubeconfig FILE or set KUBECONFIG",
                             "pass --kubeconfig or set KUBECONFIG"}) {
        for (size_t at; (at = m.find(flag)) != std::string::npos;)
            m.replace(at, std::strlen(flag), "set KUBECONFIG to an existing kubeconfig file");
    }
    for (const char *flag : {" or pass --kubeconfig"})
        for (size_t at; (at = m.find(flag)) != std::string::npos;) m.erase(at, std::strlen(flag));
    return m;
}

std::unique_ptr<kube::Client> make_kube_client(const Options &o) {
    kube::LoadOptions lo;
    lo.namespace_ = o.ns;
    kube::Config cfg;
    try {
        cfg = kube::load_config(lo);
    } catch (const Error &e) {
        throw Error(e.code(), std::string("the Kubernetes runner needs a cluster to deploy to: ") +
                                  without_kubeconfig_flag(e.what()) +
                                  " (or use \"runner\": \"docker\" to run on this machine)");
    }
    return std::make_unique<kube::Client>(std::move(cfg));
}

void check_api_server(kube::Client &c) {
    try {
        c.raw("GET", "/version", "", "", false, 5000);
    } catch (const Error &e) {
        // The client's messages already name the server, the kubeconfig and
        // what to check (reachability, TLS, 401 credentials).
        throw Error(e.code(), std::string(e.what()) + "; nothing was built or pushed");
    }
}

void kubernetes_preflight(const Options &o) {
    if (o.shards) render_objects(o, "", "");  // throws the shardSpec error
    if (!o.publish)
        throw Error(MP_EINVAL,
                    "containerize options: the Kubernetes runner needs \"publish\": true and a \"repository\" the "
                    "cluster can pull from: the image is built in memory, and a cluster cannot run an image that "
                    "was never pushed (for a local cluster, run a registry it can reach, e.g. kind's "
                    "localhost:5001); or use \"runner\": \"docker\" to run on this machine");
    auto c = make_kube_client(o);
    check_api_server(*c);
    // A namespace that does not exist fails every apply; say so before the
    // build. Users whose RBAC stops at their namespace may not read
    // namespaces at all (403): that is no reason to refuse.
    const std::string ns = c->default_namespace();
    try {
        if (!c->get_optional(kube::resources::kNamespace, "", ns))
            throw Error(MP_EINVAL, "the Kubernetes namespace \"" + ns + "\" does not exist at " + c->server() +
                                       " (" + (o.ns.empty() ? "from " + c->config().source : "from \"namespace\"") +
                                       "); create it (`kubectl create namespace " + ns +
                                       "`) or choose another \"namespace\"; nothing was built or pushed");
    } catch (const kube::ApiError &e) {
        if (!e.forbidden()) throw;
    }
}

}  // namespace mp::package
