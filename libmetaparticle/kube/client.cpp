#include "kube/client.h"

#include <algorithm>
#include <exception>
#include <thread>

namespace mp::kube {

namespace resources {
const ResourceRef kLease{"coordination.k8s.io", "v1", "leases", true};
const ResourceRef kCustomResourceDefinition{"apiextensions.k8s.io", "v1", "customresourcedefinitions", false};
const ResourceRef kNamespace{"", "v1", "namespaces", false};
const ResourceRef kPod{"", "v1", "pods", true};
const ResourceRef kService{"", "v1", "services", true};
const ResourceRef kConfigMap{"", "v1", "configmaps", true};
const ResourceRef kSecret{"", "v1", "secrets", true};
const ResourceRef kDeployment{"apps", "v1", "deployments", true};
const ResourceRef kStatefulSet{"apps", "v1", "statefulsets", true};
const ResourceRef kJob{"batch", "v1", "jobs", true};
}  // namespace resources

namespace {

constexpr size_t kPoolMax = 8;
constexpr size_t kMaxErrorBody = 64 * 1024;

std::string status_text(long code) {
    switch (code) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "HTTP " + std::to_string(code);
    }
}

// RBAC verb of a request, for "forbidden" guidance.
std::string rbac_verb(const std::string &method, const std::string &path) {
    if (method == "GET") {
        if (path.find("watch=1") != std::string::npos || path.find("watch=true") != std::string::npos) return "watch";
        return "get or list";
    }
    if (method == "POST") return "create";
    if (method == "PUT") return "update";
    if (method == "PATCH") return "patch";
    if (method == "DELETE") return "delete";
    return method;
}

// "/apis/g/v/namespaces/ns/plural/name?x" -> resource "plural.g", namespace "ns"
void resource_of_path(const std::string &path_q, std::string *resource, std::string *ns) {
    std::string path = path_q.substr(0, path_q.find('?'));
    std::vector<std::string> seg;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        if (j > i) seg.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    size_t k = 0;
    std::string group;
    if (k < seg.size() && seg[k] == "api") {
        k += 2;
    } else if (k < seg.size() && seg[k] == "apis") {
        if (k + 1 < seg.size()) group = seg[k + 1];
        k += 3;
    }
    if (k + 1 < seg.size() && seg[k] == "namespaces" && k + 2 < seg.size()) {
        *ns = seg[k + 1];
        k += 2;
    }
    if (k < seg.size()) *resource = group.empty() ? seg[k] : seg[k] + "." + group;
    if (k + 2 < seg.size()) *resource = seg[k] + "/" + seg[k + 2] + (group.empty() ? "" : "." + group);
}

std::string query_escape(const std::string &s) { return http::url_escape(s); }

void add_param(std::string *q, const std::string &key, const std::string &value) {
    if (value.empty()) return;
    *q += (q->find('?') == std::string::npos ? "?" : "&") + key + "=" + query_escape(value);
}

}  // namespace

std::string WatchEvent::name() const { return object_name(object); }
std::string WatchEvent::resource_version() const { return object_resource_version(object); }

std::string object_name(const cJSON *obj) {
    return json::get_string(json::get_object(obj, "metadata"), "name").value_or("");
}

std::string object_resource_version(const cJSON *obj) {
    return json::get_string(json::get_object(obj, "metadata"), "resourceVersion").value_or("");
}

bool has_condition(const cJSON *obj, const std::string &type) {
    const cJSON *conds = json::get_array(json::get_object(obj, "status"), "conditions");
    const cJSON *c;
    cJSON_ArrayForEach(c, conds) {
        if (json::get_string(c, "type").value_or("") == type) return json::get_string(c, "status").value_or("") == "True";
    }
    return false;
}

// ---------------------------------------------------------------------------

Client::Client(Config cfg, ClientOptions opts) : cfg_(std::move(cfg)), opts_(std::move(opts)), creds_(cfg_) {
    if (opts_.user_agent.empty()) opts_.user_agent = "metaparticle/" MP_VERSION_STRING;
}

Client::~Client() = default;

std::unique_ptr<Client> Client::from_options(const LoadOptions &opts, ClientOptions copts) {
    return std::make_unique<Client>(load_config(opts), std::move(copts));
}

std::string Client::describe() const {
    return "the Kubernetes API server at " + cfg_.server + " (" + cfg_.source + ")";
}

std::string Client::path(const ResourceRef &r, const std::string &ns, const std::string &name,
                         const std::string &subresource) const {
    std::string p = r.group.empty() ? "/api/" + r.version : "/apis/" + r.group + "/" + r.version;
    if (r.namespaced && !ns.empty()) p += "/namespaces/" + http::url_escape(ns);
    p += "/" + r.plural;
    if (!name.empty()) p += "/" + http::url_escape(name);
    if (!subresource.empty()) p += "/" + subresource;
    return p;
}

std::unique_ptr<http::Client> Client::take() {
    {
        std::lock_guard<std::mutex> lk(pool_mu_);
        if (!pool_.empty()) {
            auto c = std::move(pool_.back());
            pool_.pop_back();
            return c;
        }
    }
    auto c = std::make_unique<http::Client>();
    c->set_user_agent(opts_.user_agent);
    return c;
}

void Client::give(std::unique_ptr<http::Client> c) {
    std::lock_guard<std::mutex> lk(pool_mu_);
    if (pool_.size() < kPoolMax) pool_.push_back(std::move(c));
}

ApiError Client::make_error(const std::string &method, const std::string &path, const http::Response &resp) const {
    long code = resp.status;
    std::string reason, api_msg;
    bool is_status = false;
    bool names_object = false;
    json::Ptr body = json::parse(resp.body);
    if (body && cJSON_IsObject(body.get()) && json::get_string(body.get(), "kind").value_or("") == "Status") {
        is_status = true;
        reason = json::get_string(body.get(), "reason").value_or("");
        api_msg = json::get_string(body.get(), "message").value_or("");
        names_object = !json::get_string(json::get_object(body.get(), "details"), "name").value_or("").empty();
    } else {
        api_msg = resp.body.substr(0, 300);
        while (!api_msg.empty() && (api_msg.back() == '\n' || api_msg.back() == '\r')) api_msg.pop_back();
    }
    if (reason.empty()) {
        switch (code) {
        case 401: reason = "Unauthorized"; break;
        case 403: reason = "Forbidden"; break;
        case 404: reason = is_status ? "NotFound" : ""; break;
        case 409: reason = "Conflict"; break;
        case 410: reason = "Expired"; break;
        case 422: reason = "Invalid"; break;
        case 429: reason = "TooManyRequests"; break;
        default: break;
        }
    }
    // A 404 for a missing object is a Status naming it; a plain-text 404 or a
    // Status without a name (a collection URL) means the type is not served.
    bool type_missing = code == 404 && (!is_status || !names_object);

    std::string resource, ns;
    resource_of_path(path, &resource, &ns);
    std::string what = method + " " + path;
    std::string msg;
    if (code == 401) {
        msg = describe() + " rejected the credentials (401 Unauthorized) for " + what +
              "; the token or client certificate is missing, wrong or expired: check the user in " + cfg_.source;
    } else if (code == 403) {
        msg = "forbidden: " + (api_msg.empty() ? what : api_msg) + "; the identity used (" + cfg_.source +
              ") needs RBAC '" + rbac_verb(method, path) + "' on " + (resource.empty() ? path : resource) +
              (ns.empty() ? " (cluster-wide)" : " in namespace " + ns);
    } else if (type_missing) {
        msg = describe() + " does not serve " + (resource.empty() ? path : resource) +
              " (404 for " + what + ")" + (api_msg.empty() ? "" : ": " + api_msg);
    } else if (code >= 500) {
        msg = describe() + " failed: " + what + " -> " + std::to_string(code) + " " +
              (reason.empty() ? status_text(code) : reason) + (api_msg.empty() ? "" : ": " + api_msg);
    } else {
        msg = what + " -> " + std::to_string(code) + " " + (reason.empty() ? status_text(code) : reason) +
              (api_msg.empty() ? "" : ": " + api_msg);
    }
    return ApiError(code, reason, api_msg, msg, type_missing);
}

http::Response Client::perform(http::Request &req, bool streaming, const std::function<void()> &before_attempt) {
    req.headers.push_back("Accept: application/json");
    req.connect_timeout_ms = opts_.connect_timeout_ms;
    if (!streaming && req.timeout_ms == 0) req.timeout_ms = opts_.request_timeout_ms;
    for (int attempt = 0;; ++attempt) {
        if (before_attempt) before_attempt();
        Credentials::Current cred;
        try {
            cred = creds_.current();
        } catch (const Error &e) {
            throw Error(e.code(), "cannot get credentials for " + describe() + ": " + e.what());
        }
        auto hc = take();
        http::Tls tls = cfg_.tls;
        if (!cred.cert_pem.empty()) {
            tls.cert_pem = cred.cert_pem;
            tls.key_pem = cred.key_pem;
        }
        hc->set_tls(tls);
        hc->set_bearer_token(cred.token);
        if (cred.token.empty() && !cfg_.username.empty()) hc->set_basic_auth(cfg_.username, cfg_.password);
        http::Response resp;
        try {
            resp = hc->request(req);
        } catch (const http::TransportError &e) {
            // The connection may be broken: do not pool this handle.
            std::string detail = e.what();
            std::string hint = "; check that the API server is running and reachable and that " + cfg_.source +
                               " is right";
            if (detail.find("SSL") != std::string::npos || detail.find("certificate") != std::string::npos)
                hint = "; TLS failed: check certificate-authority(-data) / the client certificate in " + cfg_.source;
            throw http::TransportError(e.code(), "cannot reach the Kubernetes API server at " + cfg_.server + ": " +
                                                     detail + hint,
                                       e.curl_code());
        }
        give(std::move(hc));
        if (resp.status == 401 && attempt == 0 && creds_.invalidate()) continue;  // rotated token
        if (resp.status == 429 && attempt == 0 && !streaming) {
            long secs = std::atol(resp.header("retry-after").c_str());  // the server asks to slow down
            std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp(secs * 1000, 200L, 1000L)));
            continue;
        }
        return resp;
    }
}

http::Response Client::raw(const std::string &method, const std::string &path_and_query, const std::string &body,
                           const std::string &content_type, bool no_throw, long timeout_ms) {
    http::Request req;
    req.method = method;
    req.url = url(path_and_query);
    req.body = body;
    req.timeout_ms = timeout_ms;
    if (method != "GET" && method != "HEAD" && !content_type.empty()) req.headers.push_back("Content-Type: " + content_type);
    http::Response resp = perform(req, false);
    if (!no_throw && (resp.status < 200 || resp.status >= 300)) throw make_error(method, path_and_query, resp);
    return resp;
}

namespace {
json::Ptr parse_object(const Client &c, const std::string &method, const std::string &path, const http::Response &resp) {
    json::Ptr j = json::parse(resp.body);
    if (!j || !cJSON_IsObject(j.get()))
        throw Error(MP_EPROTOCOL, c.describe() + " answered " + method + " " + path +
                                      " with something that is not a JSON object: " + resp.body.substr(0, 200));
    return j;
}
}  // namespace

json::Ptr Client::get(const ResourceRef &r, const std::string &ns, const std::string &name) {
    std::string p = path(r, ns, name);
    return parse_object(*this, "GET", p, raw("GET", p));
}

json::Ptr Client::get_optional(const ResourceRef &r, const std::string &ns, const std::string &name) {
    std::string p = path(r, ns, name);
    http::Response resp = raw("GET", p, "", "", true);
    if (resp.status == 404) {
        ApiError e = make_error("GET", p, resp);
        if (e.type_not_found()) throw e;
        return nullptr;
    }
    if (resp.status < 200 || resp.status >= 300) throw make_error("GET", p, resp);
    return parse_object(*this, "GET", p, resp);
}

json::Ptr Client::list(const ResourceRef &r, const std::string &ns, const ListOptions &opts) {
    std::string base = path(r, ns);
    add_param(&base, "labelSelector", opts.label_selector);
    add_param(&base, "fieldSelector", opts.field_selector);
    add_param(&base, "resourceVersion", opts.resource_version);
    if (opts.limit > 0) add_param(&base, "limit", std::to_string(opts.limit));
    json::Ptr result;
    std::string cont;
    for (;;) {
        std::string p = base;
        add_param(&p, "continue", cont);
        json::Ptr page = parse_object(*this, "GET", p, raw("GET", p));
        cont = json::get_string(json::get_object(page.get(), "metadata"), "continue").value_or("");
        if (!result) {
            result = std::move(page);
            if (!json::get_array(result.get(), "items")) json::set(result.get(), "items", json::array());
        } else {
            cJSON *items = cJSON_GetObjectItemCaseSensitive(result.get(), "items");
            cJSON *more = cJSON_DetachItemFromObjectCaseSensitive(page.get(), "items");
            if (cJSON_IsArray(more)) {
                while (cJSON *el = cJSON_DetachItemFromArray(more, 0)) cJSON_AddItemToArray(items, el);
            }
            cJSON_Delete(more);
        }
        if (cont.empty()) break;
    }
    if (cJSON *md = cJSON_GetObjectItemCaseSensitive(result.get(), "metadata")) cJSON_DeleteItemFromObject(md, "continue");
    return result;
}

json::Ptr Client::create(const ResourceRef &r, const std::string &ns, const cJSON *obj) {
    std::string p = path(r, ns);
    return parse_object(*this, "POST", p, raw("POST", p, json::print(obj)));
}

json::Ptr Client::replace(const ResourceRef &r, const std::string &ns, const std::string &name, const cJSON *obj) {
    std::string p = path(r, ns, name);
    return parse_object(*this, "PUT", p, raw("PUT", p, json::print(obj)));
}

json::Ptr Client::remove(const ResourceRef &r, const std::string &ns, const std::string &name,
                         const std::string &propagation, const std::string &precondition_rv) {
    std::string p = path(r, ns, name);
    json::Ptr opts = json::object();
    json::set_string(opts.get(), "apiVersion", "v1");
    json::set_string(opts.get(), "kind", "DeleteOptions");
    if (!propagation.empty()) json::set_string(opts.get(), "propagationPolicy", propagation);
    if (!precondition_rv.empty())
        json::set_string(json::ensure_object(opts.get(), "preconditions"), "resourceVersion", precondition_rv);
    http::Response resp = raw("DELETE", p, json::print(opts.get()));
    json::Ptr j = json::parse(resp.body);
    return j ? std::move(j) : json::object();
}

json::Ptr Client::patch(const ResourceRef &r, const std::string &ns, const std::string &name, const cJSON *body,
                        const char *content_type) {
    std::string p = path(r, ns, name);
    add_param(&p, "fieldManager", opts_.field_manager);
    return parse_object(*this, "PATCH", p, raw("PATCH", p, json::print(body), content_type));
}

json::Ptr Client::apply(const ResourceRef &r, const std::string &ns, const cJSON *obj, bool force) {
    std::string name = object_name(obj);
    if (name.empty()) throw Error(MP_EINVAL, "server-side apply needs metadata.name in the object");
    std::string p = path(r, ns, name);
    add_param(&p, "fieldManager", opts_.field_manager);
    if (force) add_param(&p, "force", "true");
    return parse_object(*this, "PATCH", p, raw("PATCH", p, json::print(obj), "application/apply-patch+yaml"));
}

WatchEnd Client::watch(const ResourceRef &r, const std::string &ns, const WatchOptions &opts,
                       const std::function<bool(const WatchEvent &)> &on_event, const std::atomic<bool> *cancel) {
    std::string p = path(r, ns) + "?watch=1";
    add_param(&p, "resourceVersion", opts.resource_version);
    add_param(&p, "labelSelector", opts.label_selector);
    add_param(&p, "fieldSelector", opts.field_selector);
    if (opts.allow_bookmarks) add_param(&p, "allowWatchBookmarks", "true");
    if (opts.timeout_seconds > 0) add_param(&p, "timeoutSeconds", std::to_string(opts.timeout_seconds));

    std::string buffer;
    bool in_error = false;   // the body is not an event stream but an error answer
    std::string error_body;
    bool expired = false, stopped = false;
    std::exception_ptr failure;

    // Returns false to end the event stream.
    auto handle_line = [&](const std::string &line) -> bool {
        if (line.find_first_not_of(" \t\r") == std::string::npos) return true;
        json::Ptr ev = json::parse(line);
        auto type = ev && cJSON_IsObject(ev.get()) ? json::get_string(ev.get(), "type") : std::nullopt;
        if (!type) {  // not an event: the body of an error answer (checked with the status below)
            in_error = true;
            error_body = line + "\n";
            return false;
        }
        const cJSON *obj = json::get_object(ev.get(), "object");
        if (*type == "ERROR") {
            long code = static_cast<long>(json::get_int(obj, "code").value_or(0));
            std::string reason = json::get_string(obj, "reason").value_or("");
            if (code == 410 || reason == "Expired" || reason == "Gone") {
                expired = true;
                return false;
            }
            http::Response status;
            status.status = code ? code : 500;
            status.body = json::print(obj);
            failure = std::make_exception_ptr(make_error("GET", p, status));
            return false;
        }
        WatchEvent we;
        we.type = *type;
        we.object = obj;
        try {
            if (!on_event(we)) {
                stopped = true;
                return false;
            }
        } catch (...) {
            failure = std::current_exception();
            return false;
        }
        return true;
    };

    http::Request req;
    req.method = "GET";
    req.url = url(p);
    req.cancel = cancel;
    req.timeout_ms = opts.timeout_seconds > 0 ? (opts.timeout_seconds + 30) * 1000L : 0;
    req.on_data = [&](const char *data, size_t len) -> bool {
        if (in_error) {
            if (error_body.size() < kMaxErrorBody) error_body.append(data, len);
            return true;
        }
        buffer.append(data, len);
        size_t start = 0;
        for (;;) {
            size_t nl = buffer.find('\n', start);
            if (nl == std::string::npos) break;
            std::string line = buffer.substr(start, nl - start);
            start = nl + 1;
            if (!handle_line(line)) {
                if (in_error) {
                    error_body += buffer.substr(start);
                    buffer.clear();
                    return true;  // read the rest of the error answer
                }
                buffer.erase(0, start);
                return false;
            }
        }
        buffer.erase(0, start);
        return true;
    };

    auto reset = [&] {
        buffer.clear();
        in_error = false;
        error_body.clear();
        expired = stopped = false;
        failure = nullptr;
    };
    http::Response resp;
    try {
        resp = perform(req, true, reset);
    } catch (const Error &e) {
        if (e.code() == MP_ECANCELED) return WatchEnd::Canceled;
        if (auto *te = dynamic_cast<const http::TransportError *>(&e)) {
            // The server's own timeout passed without it closing the stream, or
            // the connection broke mid-stream: the caller watches again.
            if (te->timed_out() && opts.timeout_seconds > 0) return WatchEnd::Closed;
        }
        throw;
    }
    if (failure) std::rethrow_exception(failure);
    if (expired) return WatchEnd::Expired;
    if (stopped) return WatchEnd::Stopped;
    if (resp.status != 200) {
        if (resp.status == 410) return WatchEnd::Expired;
        http::Response err = resp;
        err.body = error_body + buffer;
        throw make_error("GET", p, err);
    }
    if (!in_error && !buffer.empty()) {  // a last event without a newline
        std::string rest;
        rest.swap(buffer);
        handle_line(rest);
        if (failure) std::rethrow_exception(failure);
        if (expired) return WatchEnd::Expired;
        if (stopped) return WatchEnd::Stopped;
    }
    if (in_error)
        throw Error(MP_EPROTOCOL, describe() + " sent something that is not a watch event on " + p + ": " +
                                      error_body.substr(0, 200));
    return WatchEnd::Closed;
}

void Client::stream(const std::string &path_and_query, const std::function<bool(const char *, size_t)> &on_data,
                    const std::atomic<bool> *cancel) {
    // The status code is only known when the transfer ends, so an error
    // answer would reach on_data as data. Kubernetes errors are Status JSON
    // objects: hold back a body that starts with '{' until its first line is
    // complete, and swallow it when it is a Status.
    std::string held;
    bool deciding = true;
    bool is_error = false;
    std::string error_body;
    bool user_stopped = false;
    http::Request req;
    req.method = "GET";
    req.url = url(path_and_query);
    req.cancel = cancel;
    req.on_data = [&](const char *data, size_t len) -> bool {
        if (is_error) {
            if (error_body.size() < kMaxErrorBody) error_body.append(data, len);
            return true;
        }
        if (deciding) {
            held.append(data, len);
            size_t first = held.find_first_not_of(" \t\r\n");
            if (first == std::string::npos) return true;
            if (held[first] == '{') {
                json::Ptr j = json::parse(held);
                size_t nl = held.find('\n', first);
                if (!j && nl == std::string::npos && held.size() < kMaxErrorBody) return true;  // wait for more
                if (j && json::get_string(j.get(), "kind").value_or("") == "Status" &&
                    json::get_string(j.get(), "status").value_or("") == "Failure") {
                    is_error = true;
                    error_body = held;
                    return true;
                }
            }
            deciding = false;
            std::string out;
            out.swap(held);
            if (!on_data(out.data(), out.size())) {
                user_stopped = true;
                return false;
            }
            return true;
        }
        if (!on_data(data, len)) {
            user_stopped = true;
            return false;
        }
        return true;
    };
    auto reset = [&] {
        held.clear();
        deciding = true;
        is_error = false;
        error_body.clear();
        user_stopped = false;
    };
    http::Response resp;
    try {
        resp = perform(req, true, reset);
    } catch (const Error &e) {
        if (e.code() == MP_ECANCELED) return;
        throw;
    }
    if (user_stopped) return;
    if (resp.status < 200 || resp.status >= 300) {
        http::Response err = resp;
        err.body = is_error ? error_body : held;
        throw make_error("GET", path_and_query, err);
    }
    if (!held.empty()) on_data(held.data(), held.size());
}

void Client::wait_crd_established(const std::string &name, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto delay = std::chrono::milliseconds(50);
    for (;;) {
        json::Ptr crd = get(resources::kCustomResourceDefinition, "", name);
        if (has_condition(crd.get(), "Established")) return;
        const cJSON *conds = json::get_array(json::get_object(crd.get(), "status"), "conditions");
        const cJSON *c;
        cJSON_ArrayForEach(c, conds) {
            if (json::get_string(c, "type").value_or("") == "NamesAccepted" &&
                json::get_string(c, "status").value_or("") == "False") {
                throw Error(MP_ERROR, "the CustomResourceDefinition " + name + " is not usable: its names were not accepted: " +
                                          json::get_string(c, "message").value_or("(no message)"));
            }
        }
        if (std::chrono::steady_clock::now() + delay > deadline)
            throw Error(MP_ETIMEOUT, "the CustomResourceDefinition " + name + " did not become Established within " +
                                         std::to_string(timeout.count() / 1000) + " s at " + cfg_.server +
                                         "; check `kubectl describe crd " + name + "`");
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, std::chrono::milliseconds(500));
    }
}

void Client::ensure_crd(const cJSON *crd, std::chrono::milliseconds timeout) {
    std::string name = object_name(crd);
    if (name.empty()) throw Error(MP_EINVAL, "CustomResourceDefinition without metadata.name");
    try {
        create(resources::kCustomResourceDefinition, "", crd);
    } catch (const ApiError &e) {
        if (!e.already_exists()) throw;  // another process created it first: fine
    }
    wait_crd_established(name, timeout);
}

}  // namespace mp::kube
