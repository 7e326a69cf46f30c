// Pushing (and reading back) images through the OCI distribution API:
// blob HEAD (skip what the registry has), POST + PUT ?digest= upload
// (monolithic), manifest PUT. Authentication: HTTP Basic, and the Bearer
// token flow (401 with WWW-Authenticate: Bearer realm=...,service=...,scope=
// -> GET the token from the realm -> retry), with credentials from
// credentials.h. Registries on loopback (localhost, 127.0.0.0/8, [::1]) are
// spoken to over plain HTTP, like docker's insecure-localhost rule; all
// others over HTTPS with certificate verification.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http/client.h"
#include "package/credentials.h"
#include "package/image.h"
#include "package/progress.h"

namespace mp::package {

struct ImageRef {
    std::string registry;    // host[:port] as written; "docker.io" for Docker Hub
    std::string api_host;    // where the API is: registry-1.docker.io for Hub
    std::string repository;  // path in the registry, e.g. "library/app", "team/app"
    std::string tag;
    bool plain_http = false;
    std::string base_url() const { return (plain_http ? "http://" : "https://") + api_host; }
    std::string str() const { return registry + "/" + repository + ":" + tag; }
};

// Split "host[:port]/path/name:tag" the way docker does: the first component
// is a registry host if it has a '.' or ':' or is "localhost"; otherwise the
// image is on Docker Hub ("user/app" -> docker.io/user/app, "app" ->
// docker.io/library/app). A missing tag is "latest". Digests (@sha256:) are
// accepted and kept in `tag`.
ImageRef parse_image_ref(const std::string &reference);

class Registry {
public:
    using Log = std::function<void(const std::string &)>;
    // `push` asks for push rights in the token scope.
    Registry(ImageRef ref, Credentials creds, bool push, Log log = {});
    ~Registry();

    bool blob_exists(const std::string &digest);
    // `progress`, when set, gets the bytes sent as they go.
    void upload_blob(const Blob &blob, const std::function<void(uint64_t sent, uint64_t total)> &progress = {});
    // PUT the manifest under ref.tag; returns the digest the registry reports.
    std::string put_manifest(const Blob &manifest);
    // GET a manifest by tag or digest; *media_type gets its Content-Type.
    std::string get_manifest(const std::string &tag_or_digest, const std::string &accept, std::string *media_type);
    std::string get_blob(const std::string &digest);
    // Cross-repository mount: POST /blobs/uploads/?mount=<digest>&from=<repo>.
    // true when the registry mounted it (201); false when it would not (it
    // then opens an ordinary upload instead, which is cancelled here) and
    // the blob has to be uploaded.
    bool mount_blob(const std::string &digest, const std::string &from_repository);
    // Also ask for pull rights on `repository` in Bearer token requests (a
    // mount needs them on the source repository).
    void add_pull_scope(const std::string &repository) { extra_pull_scopes_.push_back(repository); }

    const ImageRef &ref() const { return ref_; }

private:
    http::Response send(http::Request req, const std::string &what);
    void authenticate(const http::Response &challenge, const std::string &what);
    [[noreturn]] void throw_for(const http::Response &r, const std::string &what);

    ImageRef ref_;
    Credentials creds_;
    bool push_;
    Log log_;
    http::Client http_;
    std::string bearer_;
    bool basic_ = false;
    std::vector<std::string> extra_pull_scopes_;
};

struct PushResult {
    std::string manifest_digest;
    size_t blobs_uploaded = 0, blobs_skipped = 0;
    size_t blobs_mounted = 0;  // base-image layers mounted from their repository
    uint64_t bytes_uploaded = 0;
};

// Push every blob of `image` that the registry lacks, then the manifest.
// Base-image layers without data are mounted from the base's repository
// when it is on the same registry, else downloaded from it and uploaded.
// Credentials are looked up for the image's registry. Progress lines go to
// `log` (layer digests, sizes, "exists, skipped"). Throws Error(MP_EREGISTRY)
// with a message naming the registry (unreachable, credentials refused,
// push denied, protocol errors).
// `progress`: byte-level progress of each upload ("pushing layer app").
PushResult push_image(const Image &image, const Registry::Log &log, const ProgressFn &progress = {});

}  // namespace mp::package
