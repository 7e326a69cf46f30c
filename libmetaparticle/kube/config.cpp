#include "kube/config.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/time.h"
#include "json/json.h"
#include "kube/yaml.h"

extern char **environ;

namespace mp::kube {
namespace {

[[noreturn]] void fail(const std::string &msg) { throw Error(MP_EINVAL, msg); }

bool file_exists(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool read_file(const std::string &path, std::string *out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return false;
    *out = ss.str();
    return true;
}

std::string trim(const std::string &s) {
    auto a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    auto b = s.find_last_not_of(" \t\r\n");
    return s.substr(a, b - a + 1);
}

std::string dir_of(const std::string &path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string resolve(const std::string &base_dir, const std::string &p) {
    if (p.empty() || p[0] == '/') return p;
    if (p[0] == '~' && (p.size() == 1 || p[1] == '/')) {
        const char *home = std::getenv("HOME");
        if (home) return std::string(home) + p.substr(1);
    }
    return base_dir + "/" + p;
}

std::string home_dir() {
    const char *home = std::getenv("HOME");
    if (home && *home) return home;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir ? pw->pw_dir : "";
}

std::string str(const cJSON *obj, const char *key) { return json::get_string(obj, key).value_or(""); }

// kubeconfig booleans: YAML true/false, or the strings "true"/"false".
bool boolean(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : nullptr;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsString(v)) return std::string(v->valuestring) == "true";
    return false;
}

std::string base64_encode(const std::string &in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(&out[0]),
                            reinterpret_cast<const unsigned char *>(in.data()), static_cast<int>(in.size()));
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return out;
}

// One named entry of a kubeconfig list (cluster, user or context), with the
// directory of the file that defined it (relative paths resolve against it).
struct Entry {
    json::Ptr body;
    std::string dir;
    std::string file;
};

struct Kubeconfig {
    std::vector<std::string> files;
    std::string current_context;
    std::map<std::string, Entry> clusters, users, contexts;
};

void collect(const cJSON *root, const char *list, const char *member, const std::string &file,
             std::map<std::string, Entry> *into) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, list);
    if (!arr || cJSON_IsNull(arr)) return;
    if (!cJSON_IsArray(arr)) fail("kubeconfig " + file + ": '" + list + "' must be a list");
    const cJSON *el;
    cJSON_ArrayForEach(el, arr) {
        std::string name = str(el, "name");
        if (name.empty()) fail("kubeconfig " + file + ": an entry of '" + list + "' has no name");
        if (into->count(name)) continue;  // first definition wins (kubectl's merge rule)
        const cJSON *body = json::get_object(el, member);
        Entry e;
        e.body = json::Ptr(body ? cJSON_Duplicate(body, 1) : cJSON_CreateObject());
        e.dir = dir_of(file);
        e.file = file;
        into->emplace(name, std::move(e));
    }
}

void parse_file(const std::string &path, Kubeconfig *kc) {
    std::string text;
    if (!read_file(path, &text))
        fail("cannot read kubeconfig " + path + ": " + std::strerror(errno) +
             "; pass an existing file with --kubeconfig or set KUBECONFIG");
    json::Ptr root = yaml_to_json(text, "kubeconfig " + path);
    if (cJSON_IsNull(root.get())) {
        kc->files.push_back(path);
        return;  // an empty file is a valid, empty kubeconfig
    }
    if (!cJSON_IsObject(root.get())) fail("kubeconfig " + path + " is not a YAML mapping (is it a kubeconfig file?)");
    std::string kind = str(root.get(), "kind");
    if (!kind.empty() && kind != "Config") fail("kubeconfig " + path + " has kind '" + kind + "', expected 'Config'");
    kc->files.push_back(path);
    if (kc->current_context.empty()) kc->current_context = str(root.get(), "current-context");
    collect(root.get(), "clusters", "cluster", path, &kc->clusters);
    collect(root.get(), "users", "user", path, &kc->users);
    collect(root.get(), "contexts", "context", path, &kc->contexts);
}

std::string names_of(const std::map<std::string, Entry> &m) {
    std::string out;
    for (const auto &kv : m) out += (out.empty() ? "" : ", ") + kv.first;
    return out.empty() ? "none" : out;
}

std::string pod_namespace(const LoadOptions &opts) {
    std::string ns;
    if (read_file(opts.serviceaccount_dir + "/namespace", &ns)) return trim(ns);
    return "";
}

std::string read_pem_file(const std::string &path, const std::string &what, const std::string &where) {
    std::string data;
    if (!read_file(path, &data))
        fail(where + ": cannot read " + what + " file " + path + ": " + std::strerror(errno));
    return data;
}

Config from_kubeconfig(const Kubeconfig &kc, const LoadOptions &opts) {
    std::string files;
    for (const auto &f : kc.files) files += (files.empty() ? "" : ":") + f;
    std::string where = "kubeconfig " + files;

    std::string ctx_name = opts.context.empty() ? kc.current_context : opts.context;
    if (ctx_name.empty())
        fail(where + " has no current-context; pass --context NAME (contexts: " + names_of(kc.contexts) + ")");
    auto ctx_it = kc.contexts.find(ctx_name);
    if (ctx_it == kc.contexts.end())
        fail(where + " has no context named '" + ctx_name + "' (contexts: " + names_of(kc.contexts) + ")");
    const cJSON *ctx = ctx_it->second.body.get();
    std::string cluster_name = str(ctx, "cluster");
    std::string user_name = str(ctx, "user");

    auto cl_it = kc.clusters.find(cluster_name);
    if (cl_it == kc.clusters.end())
        fail(where + ": context '" + ctx_name + "' refers to cluster '" + cluster_name +
             "', which is not defined (clusters: " + names_of(kc.clusters) + ")");
    const cJSON *cluster = cl_it->second.body.get();
    const std::string &cdir = cl_it->second.dir;

    Config cfg;
    cfg.context = ctx_name;
    cfg.source = where + " (context " + ctx_name + ")";
    cfg.server = str(cluster, "server");
    if (cfg.server.empty()) fail(where + ": cluster '" + cluster_name + "' has no server");
    while (!cfg.server.empty() && cfg.server.back() == '/') cfg.server.pop_back();
    if (cfg.server.rfind("https://", 0) != 0 && cfg.server.rfind("http://", 0) != 0) cfg.server = "https://" + cfg.server;

    std::string ca_data = str(cluster, "certificate-authority-data");
    std::string ca_file = str(cluster, "certificate-authority");
    if (!ca_data.empty()) {
        try {
            cfg.tls.ca_pem = base64_decode(ca_data);
        } catch (const Error &) {
            fail(where + ": cluster '" + cluster_name + "' has invalid base64 in certificate-authority-data");
        }
    } else if (!ca_file.empty()) {
        cfg.tls.ca_pem = read_pem_file(resolve(cdir, ca_file), "certificate-authority", where);
    }
    cfg.tls.insecure_skip_verify = boolean(cluster, "insecure-skip-tls-verify");
    if (!str(cluster, "tls-server-name").empty())
        fail(where + ": cluster '" + cluster_name + "' sets tls-server-name, which is not supported; "
             "use a server URL whose host name matches the certificate");

    if (!user_name.empty()) {
        auto u_it = kc.users.find(user_name);
        if (u_it == kc.users.end())
            fail(where + ": context '" + ctx_name + "' refers to user '" + user_name +
                 "', which is not defined (users: " + names_of(kc.users) + ")");
        const cJSON *user = u_it->second.body.get();
        const std::string &udir = u_it->second.dir;
        auto decode = [&](const char *key) {
            try {
                return base64_decode(str(user, key));
            } catch (const Error &) {
                fail(where + ": user '" + user_name + "' has invalid base64 in " + key);
            }
        };
        cfg.token = str(user, "token");
        std::string token_file = str(user, "tokenFile");
        if (!token_file.empty()) cfg.token_file = resolve(udir, token_file);
        if (!str(user, "client-certificate-data").empty())
            cfg.tls.cert_pem = decode("client-certificate-data");
        else if (!str(user, "client-certificate").empty())
            cfg.tls.cert_pem = read_pem_file(resolve(udir, str(user, "client-certificate")), "client-certificate", where);
        if (!str(user, "client-key-data").empty())
            cfg.tls.key_pem = decode("client-key-data");
        else if (!str(user, "client-key").empty())
            cfg.tls.key_pem = read_pem_file(resolve(udir, str(user, "client-key")), "client-key", where);
        if (cfg.tls.cert_pem.empty() != cfg.tls.key_pem.empty())
            fail(where + ": user '" + user_name + "' has a client certificate without a key or a key without a certificate");
        cfg.username = str(user, "username");
        cfg.password = str(user, "password");

        if (const cJSON *ex = json::get_object(user, "exec")) {
            auto p = std::make_shared<ExecPlugin>();
            p->api_version = str(ex, "apiVersion");
            p->command = str(ex, "command");
            p->install_hint = str(ex, "installHint");
            p->base_dir = udir;
            if (p->command.empty()) fail(where + ": user '" + user_name + "': exec has no command");
            if (p->api_version.empty()) p->api_version = "client.authentication.k8s.io/v1";
            if (const cJSON *args = json::get_array(ex, "args")) {
                const cJSON *a;
                cJSON_ArrayForEach(a, args) if (cJSON_IsString(a)) p->args.push_back(a->valuestring);
            }
            if (const cJSON *env = json::get_array(ex, "env")) {
                const cJSON *e;
                cJSON_ArrayForEach(e, env) p->env.emplace_back(str(e, "name"), str(e, "value"));
            }
            cfg.exec = p;
        } else if (const cJSON *ap = json::get_object(user, "auth-provider")) {
            // Legacy auth providers (gcp, azure, oidc) were removed from
            // client-go; an already obtained OIDC id-token still works.
            std::string id_token = str(json::get_object(ap, "config"), "id-token");
            if (id_token.empty())
                fail(where + ": user '" + user_name + "' uses auth-provider '" + str(ap, "name") +
                     "', which is not supported; switch the kubeconfig to an exec credential plugin "
                     "(e.g. gke-gcloud-auth-plugin, kubelogin)");
            if (cfg.token.empty()) cfg.token = id_token;
        }
    }

    if (!opts.namespace_.empty())
        cfg.namespace_ = opts.namespace_;
    else if (std::string ns = pod_namespace(opts); !ns.empty())
        cfg.namespace_ = ns;
    else if (std::string ns = str(ctx, "namespace"); !ns.empty())
        cfg.namespace_ = ns;
    else
        cfg.namespace_ = "default";
    return cfg;
}

}  // namespace

std::string base64_decode(const std::string &in) {
    static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned int buf = 0;
    int bits = 0;
    bool padding = false;
    for (char c : in) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            padding = true;
            continue;
        }
        auto pos = chars.find(c);
        if (pos == std::string::npos || padding) throw Error(MP_EINVAL, "invalid base64");
        buf = (buf << 6) | static_cast<unsigned int>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buf >> bits) & 0xff);
        }
    }
    return out;
}

bool in_cluster_available(const LoadOptions &opts) {
    const char *host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char *port = std::getenv("KUBERNETES_SERVICE_PORT");
    return host && *host && port && *port && file_exists(opts.serviceaccount_dir + "/token");
}

Config load_in_cluster(const LoadOptions &opts) {
    const char *host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char *port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        fail("not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; "
             "pass --kubeconfig or set KUBECONFIG");
    Config cfg;
    cfg.in_cluster = true;
    std::string h = host;
    if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";  // IPv6
    cfg.server = "https://" + h + ":" + port;
    cfg.token_file = opts.serviceaccount_dir + "/token";
    std::string probe;
    if (!read_file(cfg.token_file, &probe))
        fail("in-cluster configuration: cannot read the service-account token " + cfg.token_file + ": " +
             std::strerror(errno) + "; is automountServiceAccountToken disabled for this pod?");
    std::string ca = opts.serviceaccount_dir + "/ca.crt";
    if (file_exists(ca)) cfg.tls.ca_file = ca;
    cfg.source = "in-cluster service account (" + opts.serviceaccount_dir + ")";
    if (!opts.namespace_.empty())
        cfg.namespace_ = opts.namespace_;
    else if (std::string ns = pod_namespace(opts); !ns.empty())
        cfg.namespace_ = ns;
    else
        cfg.namespace_ = "default";
    return cfg;
}

Config load_kubeconfig(const std::string &path, const LoadOptions &opts) {
    Kubeconfig kc;
    parse_file(path, &kc);
    return from_kubeconfig(kc, opts);
}

Config load_config(const LoadOptions &opts) {
    if (!opts.kubeconfig.empty()) return load_kubeconfig(opts.kubeconfig, opts);
    if (in_cluster_available(opts)) return load_in_cluster(opts);

    const char *env = std::getenv("KUBECONFIG");
    if (env && *env) {
        // Like kubectl: every listed file that exists is merged, the first
        // definition of a name wins; missing files are skipped.
        Kubeconfig kc;
        std::stringstream ss(env);
        std::string item;
        std::set<std::string> seen;
        while (std::getline(ss, item, ':')) {
            if (item.empty() || seen.count(item)) continue;
            seen.insert(item);
            if (file_exists(item)) parse_file(item, &kc);
        }
        if (kc.files.empty())
            fail(std::string("KUBECONFIG=") + env + " names no existing file; fix KUBECONFIG or pass --kubeconfig");
        return from_kubeconfig(kc, opts);
    }

    std::string home = home_dir();
    std::string def = home + "/.kube/config";
    if (!home.empty() && file_exists(def)) return load_kubeconfig(def, opts);
    fail("no Kubernetes configuration found: not running in a pod (KUBERNETES_SERVICE_HOST is not set), "
         "KUBECONFIG is not set and " + (home.empty() ? std::string("~/.kube/config") : def) +
         " does not exist; pass --kubeconfig FILE or set KUBECONFIG");
}

// ---------------------------------------------------------------------------
// Credentials

Credentials::Credentials(const Config &cfg)
    : static_token_(cfg.token), token_file_(cfg.token_file), exec_(cfg.exec), server_(cfg.server),
      ca_pem_(cfg.tls.ca_pem), insecure_(cfg.tls.insecure_skip_verify) {
    cur_.token = static_token_;
}

void Credentials::read_token_file_locked(bool force) {
    auto now = std::chrono::steady_clock::now();
    struct stat st;
    if (::stat(token_file_.c_str(), &st) != 0) return;  // keep the last good token
    long long mtime = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
    long long ino = static_cast<long long>(st.st_ino);
    bool changed = mtime != file_mtime_ns_ || ino != file_ino_;
    if (!force && !changed && now - file_read_at_ < std::chrono::minutes(1)) return;
    std::string tok;
    if (!read_file(token_file_, &tok)) return;
    tok = trim(tok);
    if (tok.empty()) return;
    cur_.token = tok;
    file_read_at_ = now;
    file_mtime_ns_ = mtime;
    file_ino_ = ino;
}

void Credentials::run_exec_locked() {
    const ExecPlugin &p = *exec_;
    std::string cmd = p.command;
    if (cmd.find('/') != std::string::npos && cmd[0] != '/') cmd = resolve(p.base_dir, cmd);
    std::string where = "kubeconfig exec credential plugin '" + p.command + "'";

    // ExecCredential request, as client-go sends it.
    json::Ptr info = json::object();
    json::set_string(info.get(), "apiVersion", p.api_version);
    json::set_string(info.get(), "kind", "ExecCredential");
    cJSON *spec = json::ensure_object(info.get(), "spec");
    json::set_bool(spec, "interactive", false);
    cJSON *cluster = json::ensure_object(spec, "cluster");
    json::set_string(cluster, "server", server_);
    if (!ca_pem_.empty()) json::set_string(cluster, "certificate-authority-data", base64_encode(ca_pem_));
    if (insecure_) json::set_bool(cluster, "insecure-skip-tls-verify", true);

    std::vector<std::string> env_strings;
    std::set<std::string> overridden;
    for (const auto &kv : p.env) overridden.insert(kv.first);
    overridden.insert("KUBERNETES_EXEC_INFO");
    for (char **e = environ; e && *e; ++e) {
        std::string s(*e);
        if (!overridden.count(s.substr(0, s.find('=')))) env_strings.push_back(s);
    }
    for (const auto &kv : p.env) env_strings.push_back(kv.first + "=" + kv.second);
    env_strings.push_back("KUBERNETES_EXEC_INFO=" + json::print(info.get()));
    std::vector<char *> envp, argv;
    for (auto &s : env_strings) envp.push_back(&s[0]);
    envp.push_back(nullptr);
    std::vector<std::string> args{cmd};
    args.insert(args.end(), p.args.begin(), p.args.end());
    for (auto &s : args) argv.push_back(&s[0]);
    argv.push_back(nullptr);

    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw Error(MP_ERROR, where + ": pipe: " + std::strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, cmd.c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (rc != 0) {
        ::close(out[0]);
        throw Error(MP_ERROR, where + " cannot be started: " + std::strerror(rc) +
                                  (p.install_hint.empty() ? "" : "; " + p.install_hint));
    }
    std::string output;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool timed_out = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd{out[0], POLLIN, 0};
        int pr = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        char buf[4096];
        ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        output.append(buf, static_cast<size_t>(n));
        if (output.size() > (1u << 20)) break;
    }
    ::close(out[0]);
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) throw Error(MP_ETIMEOUT, where + " did not finish within 60 s");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Error(MP_ERROR, where + " failed (exit status " +
                                  std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")" +
                                  (p.install_hint.empty() ? "" : "; " + p.install_hint));
    json::Ptr cred = json::parse(output);
    const cJSON *status_obj = json::get_object(cred.get(), "status");
    if (!status_obj) throw Error(MP_EPROTOCOL, where + " printed no ExecCredential with a status");
    Current c;
    c.token = str(status_obj, "token");
    c.cert_pem = str(status_obj, "clientCertificateData");
    c.key_pem = str(status_obj, "clientKeyData");
    if (c.token.empty() && c.cert_pem.empty())
        throw Error(MP_EPROTOCOL, where + " returned neither a token nor a client certificate");
    exec_expiry_ = {};
    std::string exp = str(status_obj, "expirationTimestamp");
    if (!exp.empty()) {
        if (auto t = parse_rfc3339(exp)) exec_expiry_ = *t;
    }
    cur_ = c;
    have_exec_cred_ = true;
}

Credentials::Current Credentials::current() {
    std::lock_guard<std::mutex> lk(mu_);
    if (exec_) {
        bool expired = exec_expiry_ != std::chrono::system_clock::time_point{} &&
                       std::chrono::system_clock::now() + std::chrono::seconds(10) >= exec_expiry_;
        if (!have_exec_cred_ || expired) run_exec_locked();
    } else if (!token_file_.empty()) {
        read_token_file_locked(false);
    }
    return cur_;
}

bool Credentials::invalidate() {
    std::lock_guard<std::mutex> lk(mu_);
    if (exec_) {
        have_exec_cred_ = false;
        return true;
    }
    if (!token_file_.empty()) {
        std::string before = cur_.token;
        read_token_file_locked(true);
        return cur_.token != before;
    }
    return false;
}

}  // namespace mp::kube
