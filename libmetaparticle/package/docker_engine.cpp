#include "package/docker_engine.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "package/digest.h"
#include "package/registry.h"
#include "package/tar.h"

namespace mp::package {
namespace {

// The Engine API version we speak: Docker 20.10+, Podman 3+ serve it.
constexpr const char *kApi = "/v1.41";

bool exists(const std::string &p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

std::string engine_message(const http::Response &r) {
    auto j = json::parse(r.body);
    if (j) {
        if (auto m = json::get_string(j.get(), "message")) return *m;
    }
    std::string b = r.body.substr(0, 300);
    while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.pop_back();
    return b;
}

// Image load/pull answer with a stream of JSON objects; a failure is an
// object with "error" / "errorDetail" (HTTP status may still be 200).
std::string stream_error(const std::string &body, std::string *last_status) {
    size_t pos = 0;
    while (pos < body.size()) {
        size_t end = body.find('\n', pos);
        if (end == std::string::npos) end = body.size();
        auto j = json::parse(body.substr(pos, end - pos));
        if (j) {
            if (auto e = json::get_string(j.get(), "error"); e && !e->empty()) return *e;
            if (const cJSON *d = json::get_object(j.get(), "errorDetail"))
                if (auto m = json::get_string(d, "message"); m && !m->empty()) return *m;
            if (last_status) {
                if (auto s = json::get_string(j.get(), "stream"); s && !s->empty()) *last_status = *s;
                else if (auto s2 = json::get_string(j.get(), "status"); s2 && !s2->empty()) *last_status = *s2;
            }
        }
        pos = end + 1;
    }
    return "";
}

}  // namespace

std::string Engine::default_host() {
    if (const char *h = std::getenv("DOCKER_HOST"); h && *h) return h;
    std::vector<std::string> candidates = {"/var/run/docker.sock", "/run/podman/podman.sock"};
    if (const char *x = std::getenv("XDG_RUNTIME_DIR"); x && *x) candidates.push_back(std::string(x) + "/podman/podman.sock");
    for (const auto &c : candidates)
        if (exists(c)) return "unix://" + c;
    return "unix:///var/run/docker.sock";
}

Engine::Engine(std::string host) : host_(std::move(host)) {
    if (host_.rfind("unix://", 0) == 0) {
        std::string path = host_.substr(7);
        if (path.empty()) throw Error(MP_EINVAL, "DOCKER_HOST \"" + host_ + "\" has no socket path");
        http_.set_unix_socket(path);
        base_ = "http://localhost";
    } else if (host_.rfind("tcp://", 0) == 0 || host_.rfind("http://", 0) == 0) {
        std::string hp = host_.substr(host_.find("://") + 3);
        while (!hp.empty() && hp.back() == '/') hp.pop_back();
        base_ = "http://" + hp;
    } else {
        throw Error(MP_EINVAL, "DOCKER_HOST \"" + host_ + "\" is not supported; use unix:///path/to/socket or tcp://host:port "
                               "(TLS-protected engines are not supported)");
    }
}

std::string Engine::url(const std::string &path) const { return base_ + kApi + path; }

http::Response Engine::call(http::Request req, const std::string &what) {
    try {
        return http_.request(req);
    } catch (const http::TransportError &e) {
        throw Error(MP_EENGINE,
                    "cannot reach the container engine at " + host_ + " to " + what + " (" + e.what() +
                        "). Start Docker, or Podman's Docker-compatible service "
                        "(`podman system service --time=0 unix:///run/podman/podman.sock`), or set DOCKER_HOST "
                        "(e.g. unix:///run/podman/podman.sock)");
    }
}

void Engine::throw_for(const http::Response &r, const std::string &what) {
    throw Error(MP_EENGINE, "the container engine at " + host_ + " could not " + what + " (HTTP " +
                                std::to_string(r.status) + "): " + engine_message(r));
}

void Engine::ping() {
    http::Request req;
    req.url = base_ + "/_ping";
    req.timeout_ms = 10000;
    auto r = call(req, "answer a ping");
    if (r.status != 200) throw_for(r, "answer a ping");
}

std::string Engine::load(const std::string &archive) {
    http::Request req;
    req.method = "POST";
    req.url = url("/images/load?quiet=1");
    req.headers.push_back("Content-Type: application/x-tar");
    req.body = archive;
    req.timeout_ms = 10 * 60 * 1000;
    auto r = call(req, "load the image");
    if (r.status != 200) throw_for(r, "load the image");
    std::string status;
    std::string err = stream_error(r.body, &status);
    if (!err.empty()) throw Error(MP_EENGINE, "the container engine at " + host_ + " could not load the image: " + err);
    while (!status.empty() && (status.back() == '\n' || status.back() == ' ')) status.pop_back();
    return status;
}

bool Engine::is_podman() {
    if (podman_ >= 0) return podman_ == 1;
    http::Request req;
    req.url = url("/version");
    req.timeout_ms = 10000;
    auto r = call(req, "report its version");
    podman_ = 0;
    if (r.status != 200) return false;
    auto j = json::parse(r.body);
    const cJSON *c;
    cJSON_ArrayForEach(c, json::get_array(j.get(), "Components")) {
        if (json::get_string(c, "Name").value_or("").find("Podman") != std::string::npos) podman_ = 1;
    }
    return podman_ == 1;
}

void Engine::pull(const std::string &reference, const std::string &registry_auth, bool plain_http) {
    http::Request req;
    req.method = "POST";
    if (plain_http && is_podman()) {
        req.url = base_ + "/v4.0.0/libpod/images/pull?reference=" + http::url_escape(reference) +
                  "&tlsVerify=false&quiet=true";
    } else {
        std::string image = reference, tag;
        auto at = reference.find('@');
        auto colon = reference.rfind(':');
        if (at == std::string::npos && colon != std::string::npos && reference.find('/', colon) == std::string::npos) {
            image = reference.substr(0, colon);
            tag = reference.substr(colon + 1);
        }
        req.url = url("/images/create?fromImage=" + http::url_escape(image) + (tag.empty() ? "" : "&tag=" + http::url_escape(tag)));
    }
    if (!registry_auth.empty()) req.headers.push_back("X-Registry-Auth: " + registry_auth);
    req.timeout_ms = 30 * 60 * 1000;
    auto r = call(req, "pull " + reference);
    if (r.status != 200) throw_for(r, "pull " + reference);
    std::string err = stream_error(r.body, nullptr);
    if (!err.empty()) {
        std::string hint;
        if (err.find("HTTP response to HTTPS client") != std::string::npos)
            hint = "; the registry speaks plain HTTP: mark it insecure for the engine (Podman: a [[registry]] entry "
                   "with location = \"" + parse_image_ref(reference).registry +
                   "\" and insecure = true in registries.conf; Docker: \"insecure-registries\" in daemon.json)";
        throw Error(MP_EENGINE, "the container engine at " + host_ + " could not pull " + reference + ": " + err + hint);
    }
}

std::string Engine::image_id(const std::string &name) {
    http::Request req;
    req.url = url("/images/" + http::url_escape(name) + "/json");
    req.timeout_ms = 30000;
    auto r = call(req, "inspect image " + name);
    if (r.status == 404) return "";
    if (r.status != 200) throw_for(r, "inspect image " + name);
    auto j = json::parse(r.body);
    return j ? json::get_string(j.get(), "Id").value_or("") : "";
}

std::vector<json::Ptr> Engine::list_containers(const std::string &label) {
    auto filters = json::object();
    auto arr = json::array();
    cJSON_AddItemToArray(arr.get(), cJSON_CreateString(label.c_str()));
    json::set(filters.get(), "label", std::move(arr));
    http::Request req;
    req.url = url("/containers/json?all=1&filters=" + http::url_escape(json::print(filters.get())));
    req.timeout_ms = 30000;
    auto r = call(req, "list containers");
    if (r.status != 200) throw_for(r, "list containers");
    auto j = json::parse(r.body);
    std::vector<json::Ptr> out;
    if (!cJSON_IsArray(j.get())) return out;
    for (cJSON *c = j->child; c; c = c->next) out.emplace_back(cJSON_Duplicate(c, 1));
    return out;
}

json::Ptr Engine::inspect_container(const std::string &id) {
    http::Request req;
    req.url = url("/containers/" + http::url_escape(id) + "/json");
    req.timeout_ms = 30000;
    auto r = call(req, "inspect container " + id);
    if (r.status == 404) return nullptr;
    if (r.status != 200) throw_for(r, "inspect container " + id);
    return json::parse(r.body);
}

std::string Engine::create_container(const std::string &name, const cJSON *body) {
    http::Request req;
    req.method = "POST";
    req.url = url("/containers/create?name=" + http::url_escape(name));
    req.headers.push_back("Content-Type: application/json");
    req.body = json::print(body);
    req.timeout_ms = 60000;
    auto r = call(req, "create container " + name);
    if (r.status != 201) throw_for(r, "create container " + name);
    auto j = json::parse(r.body);
    std::string id = j ? json::get_string(j.get(), "Id").value_or("") : "";
    if (id.empty()) throw Error(MP_EENGINE, "the container engine created " + name + " but sent no Id");
    return id;
}

void Engine::start_container(const std::string &id) {
    http::Request req;
    req.method = "POST";
    req.url = url("/containers/" + http::url_escape(id) + "/start");
    req.timeout_ms = 60000;
    auto r = call(req, "start container " + id);
    if (r.status != 204 && r.status != 304) throw_for(r, "start container " + id.substr(0, 12));
}

void Engine::stop_container(const std::string &id, int timeout_seconds) {
    http::Request req;
    req.method = "POST";
    req.url = url("/containers/" + http::url_escape(id) + "/stop?t=" + std::to_string(timeout_seconds));
    req.timeout_ms = (timeout_seconds + 30) * 1000L;
    auto r = call(req, "stop container " + id);
    if (r.status != 204 && r.status != 304 && r.status != 404) throw_for(r, "stop container " + id.substr(0, 12));
}

void Engine::remove_container(const std::string &id) {
    http::Request req;
    req.method = "DELETE";
    req.url = url("/containers/" + http::url_escape(id) + "?force=1&v=1");
    req.timeout_ms = 60000;
    auto r = call(req, "remove container " + id);
    if (r.status != 204 && r.status != 200 && r.status != 404) throw_for(r, "remove container " + id.substr(0, 12));
}

void Engine::follow_logs(const std::string &id, const std::function<bool(int, const char *, size_t)> &on_frame,
                         const std::atomic<bool> *cancel) {
    http::Request req;
    req.url = url("/containers/" + http::url_escape(id) + "/logs?follow=1&stdout=1&stderr=1");
    req.cancel = cancel;
    req.connect_timeout_ms = 10000;
    std::string buf;
    bool stop = false;
    req.on_data = [&](const char *d, size_t n) {
        buf.append(d, n);
        // Frames: [stream, 0, 0, 0, size (4 bytes big-endian)] + payload.
        size_t pos = 0;
        while (buf.size() - pos >= 8) {
            const unsigned char *h = reinterpret_cast<const unsigned char *>(buf.data() + pos);
            uint32_t len = (uint32_t(h[4]) << 24) | (uint32_t(h[5]) << 16) | (uint32_t(h[6]) << 8) | h[7];
            if (buf.size() - pos - 8 < len) break;
            int stream = h[0] == 2 ? 2 : 1;
            if (!on_frame(stream, buf.data() + pos + 8, len)) {
                stop = true;
                return false;
            }
            pos += 8 + len;
        }
        buf.erase(0, pos);
        return true;
    };
    http::Response r;
    try {
        r = http_.request(req);
    } catch (const Error &e) {
        if (e.code() == MP_ECANCELED) return;
        throw Error(MP_EENGINE, "following the logs of container " + id.substr(0, 12) + " at " + host_ + ": " + e.what());
    }
    if (stop || r.stopped_by_callback) return;
    if (r.status != 200 && r.status != 404) {
        r.body = buf;
        throw_for(r, "stream the logs of container " + id.substr(0, 12));
    }
}

std::string docker_archive(const Image &image) {
    std::string out;
    TarWriter tar([&](const char *d, size_t n) { out.append(d, n); });
    auto manifest = json::array();
    auto entry = json::object();
    std::string config_name = digest_hex(image.config.digest) + ".json";
    json::set_string(entry.get(), "Config", config_name);
    auto tags = json::array();
    cJSON_AddItemToArray(tags.get(), cJSON_CreateString(image.reference.c_str()));
    json::set(entry.get(), "RepoTags", std::move(tags));
    auto layers = json::array();
    tar.add_file(config_name, 0644, image.config.data);
    for (const auto &l : image.layers) {
        if (l.from_base && l.blob.data.empty())  // fetch_base_layers() was not called: a bug, say so
            throw Error(MP_ERROR, "internal error: the base layer " + l.blob.digest + " was not downloaded");
        std::string dir = digest_hex(l.diff_id);
        std::string name = dir + "/layer.tar";
        tar.add_directory(dir, 0755);
        tar.add_file(name, 0644, l.blob.data);
        cJSON_AddItemToArray(layers.get(), cJSON_CreateString(name.c_str()));
    }
    json::set(entry.get(), "Layers", std::move(layers));
    cJSON_AddItemToArray(manifest.get(), entry.release());
    tar.add_file("manifest.json", 0644, json::print(manifest.get()));
    tar.finish();
    return out;
}

}  // namespace mp::package
