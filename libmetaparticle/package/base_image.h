// "baseImage": reading a base image's manifest and config from its registry
// (same transport and authentication as pushing), so build_image() can put
// our layers on top of its layers, which stay referenced by digest.
#pragma once

#include <string>
#include <vector>

#include "package/image.h"
#include "package/registry.h"

namespace mp::package {

struct BaseImage {
    std::string reference;        // as written in "baseImage"
    std::string manifest_digest;  // of the (platform) image manifest used
    std::vector<Layer> layers;    // from_base, no data: media type, digest, size, diff_id
    std::string config;           // the base's image config JSON
};

// Resolve `reference` (registry/repo:tag or @sha256:...): GET its manifest
// (OCI or Docker schema 2; from an index / manifest list the linux entry of
// `architecture`), then its config. Throws Error(MP_EREGISTRY) naming the
// reference when it cannot be read (not found, unreachable, denied) or is
// not a usable image.
BaseImage resolve_base_image(const std::string &reference, const std::string &architecture,
                             const Registry::Log &log);

// Download the data of `image`'s base layers that have none (for a docker
// load, which needs every layer). Each blob is checked against its digest.
void fetch_base_layers(Image &image, const Registry::Log &log);

}  // namespace mp::package
