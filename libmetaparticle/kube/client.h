// The project's one Kubernetes API client: used by mp-sidecar's lock backends
// and by the Kubernetes deployment runner.
//
// It speaks the plain REST API with JSON: get / list / create / replace (PUT
// with metadata.resourceVersion, i.e. compare-and-swap) / delete / merge patch
// / server-side apply / watch. Objects are cJSON trees (json::Ptr); a resource
// type is named by a ResourceRef. Failures:
//   - no HTTP answer (refused, TLS, timeout): http::TransportError, whose
//     message names the API server and the kubeconfig source;
//   - an HTTP error answer: kube::ApiError, carrying the HTTP status and the
//     Status object's reason and message (409 Conflict and AlreadyExists are
//     distinguished; 401/403 messages say what to check).
//
// Thread-safety: a Client may be used from any number of threads at once. It
// keeps a small pool of HTTP connections (one libcurl handle per concurrent
// request), so keep-alive works and a long-running watch does not block other
// requests.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "http/client.h"
#include "json/json.h"
#include "kube/config.h"

namespace mp::kube {

// Names a resource type, e.g. {"coordination.k8s.io", "v1", "leases", true}.
struct ResourceRef {
    std::string group;      // "" = the core group (/api/v1)
    std::string version;
    std::string plural;     // lower-case plural used in URLs
    bool namespaced = true;

    std::string api_version() const { return group.empty() ? version : group + "/" + version; }
    // "leases.coordination.k8s.io", "pods" (for messages and RBAC hints)
    std::string resource_name() const { return group.empty() ? plural : plural + "." + group; }
};

// Well-known types.
namespace resources {
extern const ResourceRef kLease;                     // coordination.k8s.io/v1 leases
extern const ResourceRef kCustomResourceDefinition;  // apiextensions.k8s.io/v1 (cluster-scoped)
extern const ResourceRef kNamespace;                 // v1 namespaces (cluster-scoped)
extern const ResourceRef kPod;
extern const ResourceRef kService;
extern const ResourceRef kConfigMap;
extern const ResourceRef kSecret;
extern const ResourceRef kDeployment;                // apps/v1
extern const ResourceRef kStatefulSet;
extern const ResourceRef kJob;                       // batch/v1
}  // namespace resources

// The API server answered with an error status.
class ApiError : public Error {
public:
    ApiError(long status, std::string reason, std::string api_message, std::string message, bool type_missing = false)
        : Error(MP_ERROR, message), status_(status), reason_(std::move(reason)),
          api_message_(std::move(api_message)), type_missing_(type_missing) {}
    long status() const { return status_; }
    const std::string &reason() const { return reason_; }        // Status.reason, e.g. "Conflict"
    const std::string &api_message() const { return api_message_; }  // Status.message as sent

    bool not_found() const { return status_ == 404; }
    // 404 because the resource TYPE is not served (CRD missing), as opposed
    // to a missing object of a served type (whose Status names the object).
    bool type_not_found() const { return status_ == 404 && type_missing_; }
    bool conflict() const { return status_ == 409 && reason_ != "AlreadyExists"; }  // stale resourceVersion
    bool already_exists() const { return status_ == 409 && reason_ == "AlreadyExists"; }
    bool gone() const { return status_ == 410; }          // watch/list resourceVersion too old
    bool unauthorized() const { return status_ == 401; }
    bool forbidden() const { return status_ == 403; }
    bool invalid() const { return status_ == 422; }
    bool server_error() const { return status_ >= 500 || status_ == 429; }

private:
    long status_;
    std::string reason_;
    std::string api_message_;
    bool type_missing_;
};

struct ListOptions {
    std::string label_selector;
    std::string field_selector;
    std::string resource_version;  // "" = most recent (quorum read)
    long limit = 500;              // page size; list() follows `continue` tokens
};

struct WatchOptions {
    std::string resource_version;   // start after this version ("" = from now, with synthetic ADDED events)
    std::string label_selector;
    std::string field_selector;
    int timeout_seconds = 300;      // server closes the stream after this; the client gives up 30 s later
    bool allow_bookmarks = true;
};

struct WatchEvent {
    std::string type;               // ADDED, MODIFIED, DELETED, BOOKMARK (ERROR is handled by watch())
    const cJSON *object = nullptr;  // valid during the callback only
    std::string name() const;
    std::string resource_version() const;
};

enum class WatchEnd {
    Closed,    // the server ended the stream (timeout): watch again from the last resourceVersion
    Expired,   // 410 Gone / ERROR event with code 410: re-list, then watch from the list's version
    Stopped,   // the callback returned false
    Canceled,  // the cancel flag was set
};

struct PatchType {
    static constexpr const char *kMerge = "application/merge-patch+json";
    static constexpr const char *kStrategicMerge = "application/strategic-merge-patch+json";
    static constexpr const char *kJson = "application/json-patch+json";
};

struct ClientOptions {
    long request_timeout_ms = 10000;   // per non-streaming request
    long connect_timeout_ms = 5000;
    std::string user_agent;            // "" = metaparticle/<version>
    std::string field_manager = "metaparticle";  // server-side apply / field ownership
};

class Client {
public:
    explicit Client(Config cfg, ClientOptions opts = {});
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Convenience: load_config(opts) then construct.
    static std::unique_ptr<Client> from_options(const LoadOptions &opts, ClientOptions copts = {});

    const Config &config() const { return cfg_; }
    const std::string &server() const { return cfg_.server; }
    const std::string &default_namespace() const { return cfg_.namespace_; }
    // For messages: "the Kubernetes API server at https://... (kubeconfig ...)".
    std::string describe() const;

    // URL path of a collection (name "") or object, e.g.
    // /apis/coordination.k8s.io/v1/namespaces/ns/leases/name[/subresource].
    // `ns` is ignored for cluster-scoped types; "" for a namespaced type means all namespaces.
    std::string path(const ResourceRef &r, const std::string &ns, const std::string &name = "",
                     const std::string &subresource = "") const;

    // CRUD. `ns` as in path(). All return the object the server answered with.
    json::Ptr get(const ResourceRef &r, const std::string &ns, const std::string &name);
    // get() that returns an empty Ptr for 404 (object missing) instead of throwing.
    json::Ptr get_optional(const ResourceRef &r, const std::string &ns, const std::string &name);
    // The whole list (all pages merged into one List object; metadata.resourceVersion of the first page).
    json::Ptr list(const ResourceRef &r, const std::string &ns, const ListOptions &opts = {});
    json::Ptr create(const ResourceRef &r, const std::string &ns, const cJSON *obj);
    // PUT of the whole object; when obj carries metadata.resourceVersion the
    // server rejects a stale one with 409 Conflict (ApiError::conflict()).
    json::Ptr replace(const ResourceRef &r, const std::string &ns, const std::string &name, const cJSON *obj);
    // DELETE; propagation "" (server default), "Foreground", "Background" or "Orphan".
    // Optional precondition on the resourceVersion. Returns the server's answer (object or Status).
    json::Ptr remove(const ResourceRef &r, const std::string &ns, const std::string &name,
                     const std::string &propagation = "Background", const std::string &precondition_rv = "");
    json::Ptr patch(const ResourceRef &r, const std::string &ns, const std::string &name, const cJSON *patch,
                    const char *content_type = PatchType::kMerge);
    // Server-side apply: PATCH application/apply-patch+yaml (a JSON body is
    // valid YAML) with ?fieldManager=<field_manager>&force=true. `obj` must
    // carry apiVersion, kind and metadata.name.
    json::Ptr apply(const ResourceRef &r, const std::string &ns, const cJSON *obj, bool force = true);

    // Streams watch events to `on_event` until the server closes the stream,
    // the version expires (410), the callback returns false or `cancel` is
    // set (checked about once a second while idle). ERROR events with another
    // code throw ApiError. Throws like the other calls when the watch cannot be started.
    WatchEnd watch(const ResourceRef &r, const std::string &ns, const WatchOptions &opts,
                   const std::function<bool(const WatchEvent &)> &on_event,
                   const std::atomic<bool> *cancel = nullptr);

    // Streams the body of a GET (e.g. pods/log?follow=true) to `on_data`;
    // returns when the server ends it, on_data returns false or `cancel` is set.
    // Throws ApiError on an error status.
    void stream(const std::string &path_and_query, const std::function<bool(const char *, size_t)> &on_data,
                const std::atomic<bool> *cancel = nullptr);

    // Any request, for what the typed calls do not cover (discovery, /version,
    // subresources). Error statuses are thrown as ApiError unless `no_throw`.
    // `timeout_ms` 0 = ClientOptions::request_timeout_ms.
    http::Response raw(const std::string &method, const std::string &path_and_query, const std::string &body = "",
                       const std::string &content_type = "application/json", bool no_throw = false,
                       long timeout_ms = 0);

    // Creates (or tolerates an existing) CustomResourceDefinition and waits up
    // to `timeout` for its Established condition. Throws Error(MP_ETIMEOUT)
    // on timeout and Error(MP_ERROR) when the API server reports the names as
    // not accepted.
    void ensure_crd(const cJSON *crd, std::chrono::milliseconds timeout = std::chrono::seconds(60));
    // Waits for an existing CRD to be Established (same errors).
    void wait_crd_established(const std::string &name, std::chrono::milliseconds timeout = std::chrono::seconds(60));

    // Builds the ApiError for an error answer (exposed for reuse).
    ApiError make_error(const std::string &method, const std::string &path, const http::Response &resp) const;

private:
    class Lease;  // a pooled http::Client
    std::unique_ptr<http::Client> take();
    void give(std::unique_ptr<http::Client> c);
    // Sends `req` with current credentials; retries once after a 401 when the
    // credentials may have rotated (and once after 429 for plain requests).
    // `before_attempt` (streaming) resets the caller's parse state.
    http::Response perform(http::Request &req, bool streaming, const std::function<void()> &before_attempt = {});
    std::string url(const std::string &path_and_query) const { return cfg_.server + path_and_query; }

    Config cfg_;
    ClientOptions opts_;
    Credentials creds_;
    std::mutex pool_mu_;
    std::vector<std::unique_ptr<http::Client>> pool_;
};

// Helpers over objects.
std::string object_name(const cJSON *obj);              // metadata.name
std::string object_resource_version(const cJSON *obj);  // metadata.resourceVersion
// Whether a CRD object has condition `type` with status "True".
bool has_condition(const cJSON *obj, const std::string &type);

}  // namespace mp::kube
