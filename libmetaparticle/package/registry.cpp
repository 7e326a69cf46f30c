#include "package/registry.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>

#include "common/error.h"
#include "json/json.h"
#include "package/digest.h"

namespace mp::package {
namespace {

bool is_loopback_host(const std::string &hostport) {
    std::string host = hostport;
    if (!host.empty() && host[0] == '[') {
        host = host.substr(1, host.find(']') - 1);
        return host == "::1";
    }
    host = host.substr(0, host.find(':'));
    return host == "localhost" || host.rfind("127.", 0) == 0;
}

// WWW-Authenticate: Bearer realm="...",service="...",scope="..."
struct Challenge {
    std::string scheme;
    std::map<std::string, std::string> params;
};

Challenge parse_challenge(const std::string &h) {
    Challenge c;
    size_t i = 0;
    while (i < h.size() && h[i] == ' ') ++i;
    size_t sp = h.find(' ', i);
    c.scheme = h.substr(i, sp == std::string::npos ? std::string::npos : sp - i);
    for (auto &ch : c.scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (sp == std::string::npos) return c;
    i = sp + 1;
    while (i < h.size()) {
        while (i < h.size() && (h[i] == ' ' || h[i] == ',')) ++i;
        size_t eq = h.find('=', i);
        if (eq == std::string::npos) break;
        std::string key = h.substr(i, eq - i);
        for (auto &ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        i = eq + 1;
        std::string value;
        if (i < h.size() && h[i] == '"') {
            ++i;
            while (i < h.size() && h[i] != '"') {
                if (h[i] == '\\' && i + 1 < h.size()) ++i;
                value += h[i++];
            }
            ++i;  // closing quote
        } else {
            size_t comma = h.find(',', i);
            value = h.substr(i, comma == std::string::npos ? std::string::npos : comma - i);
            i = comma == std::string::npos ? h.size() : comma;
        }
        c.params[key] = value;
    }
    return c;
}

// The first message of a distribution-spec error body {"errors":[{code,message}]}.
std::string registry_message(const http::Response &r) {
    auto j = json::parse(r.body);
    if (j) {
        if (const cJSON *errs = json::get_array(j.get(), "errors"); errs && errs->child) {
            std::string code = json::get_string(errs->child, "code").value_or("");
            std::string msg = json::get_string(errs->child, "message").value_or("");
            return code.empty() ? msg : code + ": " + msg;
        }
        if (auto d = json::get_string(j.get(), "details")) return *d;
    }
    std::string b = r.body.substr(0, 200);
    while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.pop_back();
    return b;
}

std::string human(uint64_t bytes) {
    char buf[32];
    if (bytes >= 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
    else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
    else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
}

std::string short_digest(const std::string &d) { return d.substr(0, 7 + 12); }

}  // namespace

ImageRef parse_image_ref(const std::string &reference) {
    if (reference.empty()) throw Error(MP_EINVAL, "empty image reference");
    ImageRef r;
    std::string rest = reference;
    auto slash = rest.find('/');
    std::string first = slash == std::string::npos ? "" : rest.substr(0, slash);
    if (!first.empty() && (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
                           first == "localhost" || first[0] == '[')) {
        r.registry = first;
        rest = rest.substr(slash + 1);
    } else {
        r.registry = "docker.io";
    }
    // tag or digest
    auto at = rest.find('@');
    if (at != std::string::npos) {
        r.tag = rest.substr(at + 1);
        rest = rest.substr(0, at);
    } else {
        auto colon = rest.rfind(':');
        if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
            r.tag = rest.substr(colon + 1);
            rest = rest.substr(0, colon);
        } else {
            r.tag = "latest";
        }
    }
    if (rest.empty()) throw Error(MP_EINVAL, "image reference \"" + reference + "\" has no repository name");
    bool hub = r.registry == "docker.io" || r.registry == "index.docker.io";
    if (hub) {
        r.registry = "docker.io";
        r.api_host = "registry-1.docker.io";
        if (rest.find('/') == std::string::npos) rest = "library/" + rest;
    } else {
        r.api_host = r.registry;
    }
    r.repository = rest;
    r.plain_http = is_loopback_host(r.api_host);
    return r;
}

Registry::Registry(ImageRef ref, Credentials creds, bool push, Log log)
    : ref_(std::move(ref)), creds_(std::move(creds)), push_(push), log_(std::move(log)) {}

Registry::~Registry() = default;

void Registry::throw_for(const http::Response &r, const std::string &what) {
    std::string where = "the registry " + ref_.registry + " (" + ref_.base_url() + ")";
    std::string msg = registry_message(r);
    if (r.status == 401) {
        if (creds_.empty())
            throw Error(MP_EREGISTRY, where + " requires credentials to " + what + " and none were found; looked at " +
                                          credential_sources_hint() + ". Run `docker login " + ref_.registry +
                                          "` or set METAPARTICLE_REGISTRY_USERNAME and METAPARTICLE_REGISTRY_PASSWORD" +
                                          (msg.empty() ? "" : " (registry said: " + msg + ")"));
        throw Error(MP_EREGISTRY, where + " refused the credentials from " + creds_.source + " (HTTP 401" +
                                      (msg.empty() ? "" : ": " + msg) + "); check the user name and password, or run `docker login " +
                                      ref_.registry + "` again");
    }
    if (r.status == 403)
        throw Error(MP_EREGISTRY, where + " denied access to " + ref_.repository + " to " + what + " (HTTP 403" +
                                      (msg.empty() ? "" : ": " + msg) + ")" +
                                      (creds_.empty() ? "" : "; the credentials come from " + creds_.source) +
                                      ". Check that the account may push to this repository");
    throw Error(MP_EREGISTRY, where + ": " + what + " failed with HTTP " + std::to_string(r.status) +
                                  (msg.empty() ? "" : ": " + msg));
}

void Registry::authenticate(const http::Response &challenge, const std::string &what) {
    Challenge c = parse_challenge(challenge.header("www-authenticate"));
    if (c.scheme == "basic") {
        if (creds_.empty() || creds_.username.empty()) throw_for(challenge, what);
        http_.set_basic_auth(creds_.username, creds_.password);
        basic_ = true;
        return;
    }
    if (c.scheme != "bearer" || c.params["realm"].empty())
        throw Error(MP_EREGISTRY, "the registry " + ref_.registry + " asked for authentication of an unsupported kind (\"" +
                                      challenge.header("www-authenticate") + "\"); only Basic and Bearer are supported");
    std::string realm = c.params["realm"];
    std::string service = c.params["service"];
    std::string scope = "repository:" + ref_.repository + (push_ ? ":pull,push" : ":pull");
    // Token servers take several scopes as repeated scope= parameters.
    std::string more_scopes;
    for (const auto &r : extra_pull_scopes_)
        if (r != ref_.repository) more_scopes += "&scope=" + http::url_escape("repository:" + r + ":pull");
    http::Client token_client;
    http::Request req;
    req.timeout_ms = 60000;
    if (!creds_.identity_token.empty()) {
        // docker login with an identity token: the OAuth2 refresh-token grant.
        req.method = "POST";
        req.url = realm;
        req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
        req.body = "grant_type=refresh_token&client_id=metaparticle&service=" + http::url_escape(service) +
                   "&scope=" + http::url_escape(scope) + more_scopes + "&refresh_token=" +
                   http::url_escape(creds_.identity_token);
    } else {
        req.url = realm + (realm.find('?') == std::string::npos ? "?" : "&") + "service=" + http::url_escape(service) +
                  "&scope=" + http::url_escape(scope) + more_scopes;
        if (!creds_.username.empty()) token_client.set_basic_auth(creds_.username, creds_.password);
    }
    http::Response r;
    try {
        r = token_client.request(req);
    } catch (const http::TransportError &e) {
        throw Error(MP_EREGISTRY, "cannot reach the token server " + realm + " of the registry " + ref_.registry + ": " +
                                      e.what());
    }
    if (r.status == 401 || r.status == 403) {
        http::Response as401 = r;
        as401.status = 401;
        if (creds_.empty()) throw_for(as401, what);
        throw Error(MP_EREGISTRY, "the token server " + realm + " of the registry " + ref_.registry +
                                      " refused the credentials from " + creds_.source + " (HTTP " +
                                      std::to_string(r.status) + "); check them, or run `docker login " +
                                      ref_.registry + "` again");
    }
    if (r.status != 200)
        throw Error(MP_EREGISTRY, "the token server " + realm + " of the registry " + ref_.registry + " answered HTTP " +
                                      std::to_string(r.status) + ": " + registry_message(r));
    auto j = json::parse(r.body);
    std::string token = j ? json::get_string(j.get(), "token").value_or("") : "";
    if (token.empty() && j) token = json::get_string(j.get(), "access_token").value_or("");
    if (token.empty())
        throw Error(MP_EREGISTRY, "the token server " + realm + " of the registry " + ref_.registry +
                                      " answered without a token");
    bearer_ = token;
    http_.set_bearer_token(token);
}

http::Response Registry::send(http::Request req, const std::string &what) {
    if (req.timeout_ms == 0) req.timeout_ms = 10 * 60 * 1000;
    for (int attempt = 0;; ++attempt) {
        http::Response r;
        try {
            r = http_.request(req);
        } catch (const http::TransportError &e) {
            throw Error(MP_EREGISTRY, "cannot reach the registry " + ref_.registry + " at " + ref_.base_url() + " (" +
                                          e.what() + "); is it running, and is \"repository\" right?" +
                                          (ref_.plain_http ? "" : " (registries other than localhost/127.0.0.1 are spoken to over HTTPS)"));
        }
        // 401 once: authenticate and retry; a second 401 means refused.
        if (r.status == 401 && attempt == 0 && !r.header("www-authenticate").empty()) {
            authenticate(r, what);
            continue;
        }
        return r;
    }
}

bool Registry::blob_exists(const std::string &digest) {
    http::Request req;
    req.method = "HEAD";
    req.url = ref_.base_url() + "/v2/" + ref_.repository + "/blobs/" + digest;
    auto r = send(req, "check for blob " + digest);
    if (r.status == 200) return true;
    if (r.status == 404) return false;
    throw_for(r, "check for blob " + digest);
}

void Registry::upload_blob(const Blob &blob, const std::function<void(uint64_t, uint64_t)> &progress) {
    std::string what = "push to " + ref_.repository;
    http::Request post;
    post.method = "POST";
    post.url = ref_.base_url() + "/v2/" + ref_.repository + "/blobs/uploads/";
    auto r = send(post, what);
    if (r.status != 202) throw_for(r, "start a blob upload to " + ref_.repository);
    std::string loc = r.header("location");
    if (loc.empty()) throw Error(MP_EREGISTRY, "the registry " + ref_.registry + " started an upload without a Location");
    if (loc.rfind("http://", 0) != 0 && loc.rfind("https://", 0) != 0) loc = ref_.base_url() + (loc[0] == '/' ? "" : "/") + loc;
    http::Request put;
    put.method = "PUT";
    put.url = loc + (loc.find('?') == std::string::npos ? "?" : "&") + "digest=" + http::url_escape(blob.digest);
    put.headers.push_back("Content-Type: application/octet-stream");
    put.body = blob.data;
    put.on_upload = progress;
    r = send(put, what);
    if (r.status != 201) throw_for(r, "upload blob " + blob.digest);
}

bool Registry::mount_blob(const std::string &digest, const std::string &from_repository) {
    std::string what = "mount blob " + digest + " from " + from_repository + " into " + ref_.repository;
    http::Request post;
    post.method = "POST";
    post.url = ref_.base_url() + "/v2/" + ref_.repository + "/blobs/uploads/?mount=" + http::url_escape(digest) +
               "&from=" + http::url_escape(from_repository);
    auto r = send(post, what);
    if (r.status == 201) return true;
    if (r.status != 202) throw_for(r, what);
    // Not mounted (the source is not readable, or the registry does not
    // mount): it opened an upload session instead. Cancel it, best effort;
    // an abandoned session would only be purged later.
    std::string loc = r.header("location");
    if (!loc.empty()) {
        if (loc.rfind("http://", 0) != 0 && loc.rfind("https://", 0) != 0)
            loc = ref_.base_url() + (loc[0] == '/' ? "" : "/") + loc;
        http::Request del;
        del.method = "DELETE";
        del.url = loc;
        try {
            send(del, "cancel an upload");
        } catch (const Error &) {
        }
    }
    return false;
}

std::string Registry::put_manifest(const Blob &manifest) {
    http::Request put;
    put.method = "PUT";
    put.url = ref_.base_url() + "/v2/" + ref_.repository + "/manifests/" + ref_.tag;
    put.headers.push_back("Content-Type: " + manifest.media_type);
    put.body = manifest.data;
    auto r = send(put, "push the manifest of " + ref_.repository + ":" + ref_.tag);
    if (r.status != 201 && r.status != 200) throw_for(r, "push the manifest of " + ref_.repository + ":" + ref_.tag);
    std::string d = r.header("docker-content-digest");
    return d.empty() ? manifest.digest : d;
}

std::string Registry::get_manifest(const std::string &tag_or_digest, const std::string &accept, std::string *media_type) {
    http::Request get;
    get.url = ref_.base_url() + "/v2/" + ref_.repository + "/manifests/" + tag_or_digest;
    get.headers.push_back("Accept: " + accept);
    auto r = send(get, "read the manifest " + tag_or_digest);
    if (r.status != 200) throw_for(r, "read the manifest " + ref_.repository + ":" + tag_or_digest);
    if (media_type) *media_type = r.header("content-type");
    return r.body;
}

std::string Registry::get_blob(const std::string &digest) {
    http::Request get;
    get.url = ref_.base_url() + "/v2/" + ref_.repository + "/blobs/" + digest;
    auto r = send(get, "read blob " + digest);
    // Registries may redirect blob reads to storage (S3, a CDN); the signed
    // URL must be fetched without our Authorization header.
    for (int hops = 0; hops < 5 && (r.status == 307 || r.status == 302 || r.status == 301 || r.status == 303); ++hops) {
        http::Client plain;
        http::Request follow;
        follow.url = r.header("location");
        follow.timeout_ms = 10 * 60 * 1000;
        try {
            r = plain.request(follow);
        } catch (const http::TransportError &e) {
            throw Error(MP_EREGISTRY, "reading blob " + digest + " from " + follow.url + ": " + e.what());
        }
    }
    if (r.status != 200) throw_for(r, "read blob " + digest);
    if (sha256_digest(r.body) != digest)
        throw Error(MP_EREGISTRY, "the registry " + ref_.registry + " sent blob " + digest + " with different content");
    return r.body;
}

PushResult push_image(const Image &image, const Registry::Log &log, const ProgressFn &progress) {
    auto say = [&](const std::string &m) {
        if (log) log(m);
    };
    ImageRef ref = parse_image_ref(image.reference);
    Credentials creds = lookup_credentials(ref.registry);
    say("pushing " + image.reference + " to " + ref.base_url() +
        (creds.empty() ? " (no credentials)" : " (credentials from " + creds.source + ")"));
    Registry reg(ref, creds, true, log);
    // Layers of a base image come from its repository: mounted when it is
    // on the same registry (no bytes move), else downloaded from it.
    std::optional<ImageRef> base_ref;
    if (!image.base_reference.empty()) base_ref = parse_image_ref(image.base_reference);
    const bool same_registry = base_ref && base_ref->api_host == ref.api_host && base_ref->plain_http == ref.plain_http;
    if (same_registry) reg.add_pull_scope(base_ref->repository);
    std::unique_ptr<Registry> base_reg;
    PushResult res;
    struct Item {
        const Blob *blob;
        uint64_t size;
        bool remote;  // a base layer whose data is not here
    };
    std::vector<Item> items;
    for (const auto &l : image.layers) items.push_back({&l.blob, l.compressed_size(), l.from_base && l.blob.data.empty()});
    items.push_back({&image.config, image.config.data.size(), false});
    for (const Item &it : items) {
        const Blob *b = it.blob;
        std::string label = short_digest(b->digest) + " " + human(it.size);
        if (reg.blob_exists(b->digest)) {
            say("  " + label + ": exists, skipped");
            ++res.blobs_skipped;
            continue;
        }
        Blob fetched;
        if (it.remote) {
            if (same_registry && reg.mount_blob(b->digest, base_ref->repository)) {
                say("  " + label + ": mounted from " + base_ref->repository);
                ++res.blobs_mounted;
                continue;
            }
            if (!base_reg)
                base_reg = std::make_unique<Registry>(*base_ref, lookup_credentials(base_ref->registry), false, log);
            say("  " + label + ": copying from the base image " + image.base_reference);
            fetched.media_type = b->media_type;
            fetched.digest = b->digest;
            fetched.data = base_reg->get_blob(b->digest);
            b = &fetched;
        }
        auto t0 = std::chrono::steady_clock::now();
        // Named by layer when it is one of ours ("pushing layer app").
        std::string step = "pushing " + short_digest(b->digest);
        for (const auto &l : image.layers)
            if (&l.blob == it.blob) step = "pushing layer " + l.description;
        std::function<void(uint64_t, uint64_t)> on_upload;
        if (progress) on_upload = [&](uint64_t sent, uint64_t total) { progress(step, sent, total); };
        reg.upload_blob(*b, on_upload);
        if (progress) progress(step, b->data.size(), b->data.size());
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.2f", s);
        say("  " + label + ": uploaded " + human(b->data.size()) + " in " + secs + " s");
        ++res.blobs_uploaded;
        res.bytes_uploaded += b->data.size();
    }
    res.manifest_digest = reg.put_manifest(image.manifest);
    say("  manifest " + res.manifest_digest + " -> " + image.reference);
    return res;
}

}  // namespace mp::package
