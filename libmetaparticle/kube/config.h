// Where the Kubernetes API server is and how to authenticate to it:
// in-cluster service-account configuration or a kubeconfig file.
//
// Which source is used:
//   1. an explicit kubeconfig path (LoadOptions::kubeconfig),
//   2. in-cluster, when KUBERNETES_SERVICE_HOST/PORT are set and the
//      service-account token exists (a sidecar in a pod),
//   3. $KUBECONFIG (':'-separated; existing files merged like kubectl does),
//   4. ~/.kube/config.
// Namespace: LoadOptions::namespace_, else the pod's namespace file, else the
// kubeconfig context's namespace, else "default".
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/client.h"

namespace mp::kube {

// A client-go "exec" credential plugin (users[].user.exec in a kubeconfig):
// the command prints an ExecCredential whose status carries a token or a
// client certificate (EKS, GKE, AKS, OIDC helpers use this).
struct ExecPlugin {
    std::string api_version;  // client.authentication.k8s.io/v1 or v1beta1
    std::string command;
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;
    std::string install_hint;
    std::string base_dir;     // the kubeconfig's directory (relative commands)
};

struct Config {
    std::string server;         // "https://host:port" (no trailing slash)
    http::Tls tls;              // CA, client certificate/key, insecure flag
    std::string token;          // static bearer token
    std::string token_file;     // bearer token file, re-read when it changes (rotation)
    std::string username;       // basic auth (rare; kubeconfig username/password)
    std::string password;
    std::shared_ptr<ExecPlugin> exec;  // credential plugin, when configured
    std::string namespace_;     // the namespace to use (already resolved)
    std::string context;        // kubeconfig context used ("" in-cluster)
    std::string source;         // human description, e.g. "kubeconfig /home/u/.kube/config (context kind-x)"
    bool in_cluster = false;
};

struct LoadOptions {
    std::string kubeconfig;     // explicit file; "" = automatic (see above)
    std::string context;        // kubeconfig context; "" = current-context
    std::string namespace_;     // explicit namespace; "" = automatic
    // Where the service-account files are (tests point this elsewhere).
    std::string serviceaccount_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
};

// Loads the configuration. Throws mp::Error(MP_EINVAL) with a message naming
// the file and the problem (missing file, bad YAML, unknown context...).
Config load_config(const LoadOptions &opts = {});

// The individual loaders.
Config load_in_cluster(const LoadOptions &opts);
Config load_kubeconfig(const std::string &path, const LoadOptions &opts);

// Whether the in-cluster configuration is available.
bool in_cluster_available(const LoadOptions &opts);

// Decodes standard base64 (whitespace ignored). Throws mp::Error(MP_EINVAL).
std::string base64_decode(const std::string &in);

// The credentials of a Config, kept current: a token file is re-read when it
// changes (and at least every minute), an exec plugin is re-run when its
// credential expires or after the server answered 401. Thread-safe.
class Credentials {
public:
    explicit Credentials(const Config &cfg);

    struct Current {
        std::string token;      // bearer token ("" = none)
        std::string cert_pem;   // client certificate from an exec plugin ("" = from the config)
        std::string key_pem;
    };
    Current current();
    // The server said 401: drop cached credentials so the next current()
    // re-reads / re-executes. Returns true if that may help (a retry is useful).
    bool invalidate();

private:
    void read_token_file_locked(bool force);
    void run_exec_locked();

    std::mutex mu_;
    std::string static_token_;
    std::string token_file_;
    std::shared_ptr<ExecPlugin> exec_;
    std::string server_;
    std::string ca_pem_;
    bool insecure_ = false;

    Current cur_;
    std::chrono::steady_clock::time_point file_read_at_{};
    long long file_mtime_ns_ = -1;
    long long file_ino_ = -1;
    bool have_exec_cred_ = false;
    std::chrono::system_clock::time_point exec_expiry_{};  // epoch = never expires
};

}  // namespace mp::kube
