// "Code as config": the objects a runner would create, as JSON, without
// creating anything. mp_containerize_render() returns them and dryRun prints
// them, so infrastructure can be unit-tested.
#pragma once

#include <string>

#include "json/json.h"
#include "package/image.h"
#include "package/options.h"

namespace mp::package {

// Label keys on everything the runners create.
constexpr const char *kLabelName = "io.metaparticle.name";
constexpr const char *kLabelReplica = "io.metaparticle.replica";
constexpr const char *kLabelImage = "io.metaparticle.image";

// The Docker Engine API body of POST /containers/create for replica `index`
// (0-based) running `image` (a reference or an image ID). Ports: replica i
// publishes container port p on host port p + i, on 127.0.0.1, or on all
// interfaces when "public" is set.
json::Ptr docker_create_body(const Options &o, int index, const std::string &image);
// The name of replica `index`: "<name>-<index>".
std::string replica_name(const Options &o, int index);
// [{"name": "<name>-<i>", "body": {create body}}, ...] for every replica.
json::Ptr render_docker(const Options &o, const std::string &image);

// {"image": {"reference", "digest", "config", "manifest"},
//  "docker": [...], "kubernetes": [...]}
json::Ptr render_all(const Options &o, const Image &image);

}  // namespace mp::package
