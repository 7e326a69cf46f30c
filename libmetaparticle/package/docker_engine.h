// A client of the Docker Engine API (v1.41) over its unix socket (or plain
// TCP), which Podman's Docker-compatible service also serves. Only what the
// docker runner needs: ping, image load/pull/inspect, container create /
// start / logs / inspect / stop / remove / list.
//
// Not thread-safe (one HTTP connection); the runner uses one Engine per
// thread, all for the same host.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "http/client.h"
#include "json/json.h"
#include "package/image.h"

namespace mp::package {

class Engine {
public:
    // $DOCKER_HOST when set; else the first socket that exists of
    // /var/run/docker.sock, /run/podman/podman.sock,
    // $XDG_RUNTIME_DIR/podman/podman.sock; else /var/run/docker.sock.
    static std::string default_host();

    // `host`: unix:///path, tcp://host:port or http://host:port.
    explicit Engine(std::string host);

    const std::string &host() const { return host_; }

    // GET /_ping; throws Error(MP_EENGINE) saying how to start an engine.
    void ping();
    // POST /images/load with a docker-archive tar; returns what the engine
    // reports it loaded (may be "").
    std::string load(const std::string &archive);
    // POST /images/create?fromImage=...; `registry_auth` is the
    // X-Registry-Auth header value ("" for none). `plain_http`: the registry
    // speaks HTTP, not HTTPS (one on loopback). Docker already pulls from
    // loopback registries over HTTP; Podman's Docker-compatible pull has no
    // such rule and no option, so for Podman the pull goes through its own
    // API (/libpod/images/pull?tlsVerify=false), as `podman pull
    // --tls-verify=false` does.
    void pull(const std::string &reference, const std::string &registry_auth, bool plain_http = false);
    // Whether the engine is Podman (GET /version names "Podman Engine").
    bool is_podman();
    // The image's ID, or "" when the engine does not have it.
    std::string image_id(const std::string &name_or_id);

    // Containers (running or not) carrying the label key=value.
    std::vector<json::Ptr> list_containers(const std::string &label);
    // GET /containers/{id}/json, or an empty Ptr on 404.
    json::Ptr inspect_container(const std::string &name_or_id);
    std::string create_container(const std::string &name, const cJSON *body);
    void start_container(const std::string &id);
    // POST /containers/{id}/stop?t=...; a stopped or missing one is fine.
    void stop_container(const std::string &id, int timeout_seconds);
    // DELETE /containers/{id}?force=1&v=1; a missing one is fine.
    void remove_container(const std::string &id);
    // Follows stdout+stderr until the container exits, `cancel` is set, or
    // on_frame returns false. Demultiplexes the 8-byte stream headers:
    // on_frame(1 = stdout / 2 = stderr, data, len). Returns normally in all
    // those cases.
    void follow_logs(const std::string &id, const std::function<bool(int, const char *, size_t)> &on_frame,
                     const std::atomic<bool> *cancel);

private:
    http::Response call(http::Request req, const std::string &what);
    [[noreturn]] void throw_for(const http::Response &r, const std::string &what);
    std::string url(const std::string &path) const;

    std::string host_;
    std::string base_;  // http://localhost or http://host:port
    int podman_ = -1;   // is_podman(): -1 not asked yet
    http::Client http_;
};

// A docker-archive (the `docker save` layout: manifest.json, the config, one
// <diff_id>/layer.tar per layer) for POST /images/load. The layer files are
// the gzip'd blobs: `docker save` writes them uncompressed, but Docker's and
// Podman's load both decompress layers (checked against the config's
// diff_ids), and this halves what crosses the socket and keeps no second copy.
std::string docker_archive(const Image &image);

}  // namespace mp::package
