// Exercises kube::Client against an API server (the fake, or a real cluster):
// server-side apply, merge patch, get / get_optional, create conflicts,
// replace with a stale resourceVersion, paginated and label-selected lists,
// watch (events, cancel, 410), delete, CRD installation, log streaming and
// error mapping. Run by test_kube_client.py:
//   kube_client_check KUBECONFIG NAMESPACE [--fake]
//   kube_client_check KUBECONFIG NAMESPACE --fake --deploy DEPLOY_DIR
//     also applies every manifest of deploy/ (server-side apply, namespace
//     rewritten to NAMESPACE) and waits for the Deployments to be ready.
// Prints one line per failed check and exits 1 if any failed.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "kube/client.h"
#include "kube/yaml.h"

#include <fstream>
#include <map>
#include <sstream>

using namespace mp;
using namespace std::chrono_literals;

namespace {

int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            ++failures;                                                              \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                            \
    } while (0)

// Runs fn; returns the ApiError it threw (status 0 if none / another exception).
template <typename Fn>
kube::ApiError api_error_of(Fn &&fn) {
    try {
        fn();
    } catch (const kube::ApiError &e) {
        return e;
    } catch (const std::exception &e) {
        std::printf("note: unexpected exception: %s\n", e.what());
    }
    return kube::ApiError(0, "", "", "no error");
}

json::Ptr config_map(const std::string &name, const std::string &value) {
    json::Ptr o = json::object();
    json::set_string(o.get(), "apiVersion", "v1");
    json::set_string(o.get(), "kind", "ConfigMap");
    cJSON *md = json::ensure_object(o.get(), "metadata");
    json::set_string(md, "name", name);
    json::set_string(json::ensure_object(md, "labels"), "app", "kube-client-check");
    json::set_string(json::ensure_object(o.get(), "data"), "a", value);
    return o;
}

std::string data_of(const cJSON *obj, const char *key) {
    return json::get_string(json::get_object(obj, "data"), key).value_or("<missing>");
}

// Applies deploy/*.yaml into `ns` (namespaced objects and RoleBinding
// subjects moved there) and waits for the Deployments' replicas to be ready.
void apply_deploy_manifests(kube::Client &client, const std::string &ns, const std::string &dir) {
    static const std::map<std::string, kube::ResourceRef> kinds = {
        {"CustomResourceDefinition", kube::resources::kCustomResourceDefinition},
        {"ServiceAccount", {"", "v1", "serviceaccounts", true}},
        {"Role", {"rbac.authorization.k8s.io", "v1", "roles", true}},
        {"RoleBinding", {"rbac.authorization.k8s.io", "v1", "rolebindings", true}},
        {"ClusterRole", {"rbac.authorization.k8s.io", "v1", "clusterroles", false}},
        {"ClusterRoleBinding", {"rbac.authorization.k8s.io", "v1", "clusterrolebindings", false}},
        {"Deployment", kube::resources::kDeployment},
    };
    std::map<std::string, int> deployments;
    for (const char *f : {"crd.yaml", "rbac-kubernetes.yaml", "rbac-lease.yaml", "deployment-election.yaml",
                          "deployment-lock.yaml"}) {
        std::ifstream in(dir + "/" + f);
        std::stringstream ss;
        ss << in.rdbuf();
        for (auto &doc : kube::yaml_to_json_all(ss.str(), f)) {
            std::string kind = json::get_string(doc.get(), "kind").value_or("");
            auto it = kinds.find(kind);
            CHECK(it != kinds.end());
            if (it == kinds.end()) continue;
            if (it->second.namespaced)
                json::set_string(json::ensure_object(doc.get(), "metadata"), "namespace", ns);
            if (cJSON *subjects = cJSON_GetObjectItemCaseSensitive(doc.get(), "subjects")) {
                cJSON *sub;
                cJSON_ArrayForEach(sub, subjects) json::set_string(sub, "namespace", ns);
            }
            json::Ptr applied = client.apply(it->second, ns, doc.get());
            CHECK(kube::object_name(applied.get()) == kube::object_name(doc.get()));
            if (kind == "Deployment")
                deployments[kube::object_name(doc.get())] =
                    static_cast<int>(json::get_int(json::get_object(doc.get(), "spec"), "replicas").value_or(1));
        }
    }
    CHECK(deployments.size() == 2);
    for (const auto &[name, replicas] : deployments) {
        int ready = -1;
        for (int i = 0; i < 300 && ready != replicas; ++i) {
            json::Ptr d = client.get(kube::resources::kDeployment, ns, name);
            ready = static_cast<int>(json::get_int(json::get_object(d.get(), "status"), "readyReplicas").value_or(0));
            if (ready != replicas) std::this_thread::sleep_for(50ms);
        }
        if (ready != replicas) std::printf("deployment %s: %d of %d replicas ready\n", name.c_str(), ready, replicas);
        CHECK(ready == replicas);
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s KUBECONFIG NAMESPACE [--fake]\n", argv[0]);
        return 2;
    }
    const bool fake = argc > 3 && std::string(argv[3]) == "--fake";
    const std::string deploy_dir = argc > 5 && std::string(argv[4]) == "--deploy" ? argv[5] : "";
    kube::LoadOptions lo;
    lo.kubeconfig = argv[1];
    lo.namespace_ = argv[2];
    auto client = kube::Client::from_options(lo);
    const std::string ns = client->default_namespace();
    const auto &CM = kube::resources::kConfigMap;

    try {
        // Server-side apply creates, then updates.
        json::Ptr applied = client->apply(CM, ns, config_map("cm1", "1").get());
        CHECK(data_of(applied.get(), "a") == "1");
        json::Ptr again = config_map("cm1", "2");
        json::set_string(json::ensure_object(again.get(), "data"), "b", "3");
        applied = client->apply(CM, ns, again.get());
        CHECK(data_of(applied.get(), "a") == "2");
        CHECK(data_of(applied.get(), "b") == "3");

        // get / get_optional / 404.
        json::Ptr got = client->get(CM, ns, "cm1");
        CHECK(kube::object_name(got.get()) == "cm1");
        CHECK(!client->get_optional(CM, ns, "no-such-cm"));
        auto e = api_error_of([&] { client->get(CM, ns, "no-such-cm"); });
        CHECK(e.not_found() && !e.type_not_found());
        e = api_error_of([&] { client->get(kube::ResourceRef{"nothing.example.com", "v1", "things", true}, ns, "x"); });
        CHECK(e.type_not_found());

        // Create conflicts: AlreadyExists, distinct from Conflict.
        e = api_error_of([&] { client->create(CM, ns, config_map("cm1", "x").get()); });
        CHECK(e.already_exists() && !e.conflict());

        // Replace with the current version works; with a stale one: 409 Conflict.
        std::string rv = kube::object_resource_version(got.get());
        json::set_string(json::ensure_object(got.get(), "data"), "a", "replaced");
        json::Ptr replaced = client->replace(CM, ns, "cm1", got.get());
        CHECK(data_of(replaced.get(), "a") == "replaced");
        CHECK(kube::object_resource_version(replaced.get()) != rv);
        e = api_error_of([&] { client->replace(CM, ns, "cm1", got.get()); });  // still carries `rv`
        CHECK(e.conflict() && !e.already_exists());

        // Merge patch.
        json::Ptr patch = json::object();
        json::set_string(json::ensure_object(patch.get(), "data"), "c", "4");
        json::Ptr patched = client->patch(CM, ns, "cm1", patch.get());
        CHECK(data_of(patched.get(), "c") == "4");
        CHECK(data_of(patched.get(), "a") == "replaced");

        // Lists: label selector, pagination merged into one list.
        client->create(CM, ns, config_map("cm2", "x").get());
        client->create(CM, ns, config_map("cm3", "x").get());
        kube::ListOptions lopts;
        lopts.label_selector = "app=kube-client-check";
        lopts.limit = 1;
        json::Ptr lst = client->list(CM, ns, lopts);
        CHECK(cJSON_GetArraySize(json::get_array(lst.get(), "items")) == 3);
        CHECK(!kube::object_resource_version(lst.get()).empty());
        lopts.label_selector = "app=nothing";
        CHECK(cJSON_GetArraySize(json::get_array(client->list(CM, ns, lopts).get(), "items")) == 0);

        // Watch from the list's version: sees a later create, stops on request.
        std::string list_rv = kube::object_resource_version(client->list(CM, ns).get());
        std::thread creator([&] {
            std::this_thread::sleep_for(300ms);
            client->create(CM, ns, config_map("cm4", "x").get());
        });
        kube::WatchOptions wo;
        wo.resource_version = list_rv;
        wo.timeout_seconds = 20;
        std::string seen;
        kube::WatchEnd end = client->watch(CM, ns, wo, [&](const kube::WatchEvent &ev) {
            if (ev.type == "ADDED" && ev.name() == "cm4") {
                seen = ev.type;
                return false;
            }
            return true;
        });
        creator.join();
        CHECK(end == kube::WatchEnd::Stopped);
        CHECK(seen == "ADDED");

        // Watch canceled from another thread.
        std::atomic<bool> cancel{false};
        std::thread canceler([&] {
            std::this_thread::sleep_for(200ms);
            cancel = true;
        });
        auto t0 = std::chrono::steady_clock::now();
        wo.resource_version = kube::object_resource_version(client->list(CM, ns).get());
        end = client->watch(CM, ns, wo, [](const kube::WatchEvent &) { return true; }, &cancel);
        canceler.join();
        CHECK(end == kube::WatchEnd::Canceled);
        CHECK(std::chrono::steady_clock::now() - t0 < 5s);

        // A watch that the server ends (timeoutSeconds) is Closed.
        wo.timeout_seconds = 1;
        end = client->watch(CM, ns, wo, [](const kube::WatchEvent &) { return true; });
        CHECK(end == kube::WatchEnd::Closed);

        if (fake) {
            // A version older than the compacted history: 410 -> Expired.
            std::string old_rv = kube::object_resource_version(client->list(CM, ns).get());
            client->create(CM, ns, config_map("cm5", "x").get());
            client->raw("POST", "/fake/compact");
            wo.resource_version = old_rv;
            wo.timeout_seconds = 20;
            end = client->watch(CM, ns, wo, [](const kube::WatchEvent &) { return true; });
            CHECK(end == kube::WatchEnd::Expired);
        }

        // Delete.
        client->remove(CM, ns, "cm1");
        CHECK(!client->get_optional(CM, ns, "cm1"));
        e = api_error_of([&] { client->remove(CM, ns, "cm1"); });
        CHECK(e.not_found());

        // CRD installation: created, Established; a second ensure tolerates AlreadyExists.
        json::Ptr crd = json::parse(R"({
          "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
          "metadata": {"name": "widgets.check.metaparticle.io"},
          "spec": {"group": "check.metaparticle.io", "scope": "Namespaced",
                   "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
                   "versions": [{"name": "v1", "served": true, "storage": true,
                                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}})");
        client->ensure_crd(crd.get(), 30s);
        client->ensure_crd(crd.get(), 30s);
        kube::ResourceRef widgets{"check.metaparticle.io", "v1", "widgets", true};
        json::Ptr w = json::parse(R"({"apiVersion":"check.metaparticle.io/v1","kind":"Widget",
                                      "metadata":{"name":"w1"},"spec":{"size":3}})");
        json::Ptr cw = client->create(widgets, ns, w.get());
        CHECK(json::get_int(json::get_object(cw.get(), "spec"), "size").value_or(0) == 3);
        client->remove(kube::resources::kCustomResourceDefinition, "", "widgets.check.metaparticle.io");

        if (fake) {
            // Streaming a pod's log; an error answer is not passed on as data.
            json::Ptr pod = json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1"},
                "spec":{"containers":[{"name":"c","image":"busybox"}]}})");
            client->create(kube::resources::kPod, ns, pod.get());
            for (int i = 0; i < 200; ++i) {  // logs are served once the container runs
                json::Ptr p = client->get(kube::resources::kPod, ns, "p1");
                if (json::get_string(json::get_object(p.get(), "status"), "phase").value_or("") == "Running") break;
                std::this_thread::sleep_for(50ms);
            }
            client->raw("POST", "/fake/logs/" + ns + "/p1", "hello from the pod\n", "text/plain");
            std::string logs;
            client->stream(client->path(kube::resources::kPod, ns, "p1", "log") + "?follow=true",
                           [&](const char *d, size_t n) {
                               logs.append(d, n);
                               return logs.find("hello from the pod") == std::string::npos;
                           });
            CHECK(logs.find("hello from the pod") != std::string::npos);
            std::string junk;
            e = api_error_of([&] {
                client->stream(client->path(kube::resources::kPod, ns, "no-such-pod", "log"),
                               [&](const char *d, size_t n) {
                                   junk.append(d, n);
                                   return true;
                               });
            });
            CHECK(e.not_found());
            CHECK(junk.empty());

            // A wrong token: 401 with guidance.
            kube::Config bad = client->config();
            bad.token = "wrong-token";
            kube::Client bad_client(bad);
            e = api_error_of([&] { bad_client.get(CM, ns, "cm2"); });
            CHECK(e.unauthorized());
            CHECK(std::string(e.what()).find("rejected the credentials") != std::string::npos);
        }

        if (fake && !deploy_dir.empty()) apply_deploy_manifests(*client, ns, deploy_dir);

        // Nobody listening: a TransportError naming the server.
        kube::Config nowhere = client->config();
        nowhere.server = "https://127.0.0.1:1";
        kube::Client nowhere_client(nowhere);
        bool transport = false;
        try {
            nowhere_client.get(CM, ns, "cm2");
        } catch (const http::TransportError &te) {
            transport = std::string(te.what()).find("cannot reach the Kubernetes API server at https://127.0.0.1:1") !=
                        std::string::npos;
        }
        CHECK(transport);
    } catch (const std::exception &e) {
        std::printf("FAIL: unexpected exception: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
