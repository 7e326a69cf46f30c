// Registry credentials, found the way `docker login` stores them, so a user
// who can `docker push` can publish without further setup.
//
// Order (first match wins):
//  1. METAPARTICLE_REGISTRY_USERNAME + METAPARTICLE_REGISTRY_PASSWORD
//     (environment; applies to the registry being pushed to; for CI);
//  2. docker config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json):
//     credHelpers[<registry>] -> run docker-credential-<helper> get;
//     auths[<registry>]       -> "auth" (base64 user:password), or
//                                "username"/"password", or "identitytoken";
//     credsStore              -> run docker-credential-<store> get.
// Docker Hub is looked up under https://index.docker.io/v1/ (docker's key)
// as well as its host names.
#pragma once

#include <string>

namespace mp::package {

struct Credentials {
    std::string username;
    std::string password;
    std::string identity_token;  // OAuth2 refresh token (docker login with a token helper)
    std::string source;          // where they came from, for messages ("" = none found)
    bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

// `registry` is the host[:port] from the image reference ("docker.io" for Hub).
Credentials lookup_credentials(const std::string &registry);

// Where lookup_credentials looks, for "no credentials found" messages.
std::string credential_sources_hint();

std::string base64_encode(const std::string &in, bool url_safe = false);
// Standard or URL-safe alphabet, padding optional; throws Error(MP_EINVAL).
std::string base64_decode(const std::string &in);

// Runs `docker-credential-<helper> get` with `server` on stdin (30 s limit).
// Returns empty Credentials when the helper knows no credentials for it;
// throws Error(MP_EREGISTRY) when the helper is missing or fails otherwise.
Credentials run_credential_helper(const std::string &helper, const std::string &server);

}  // namespace mp::package
