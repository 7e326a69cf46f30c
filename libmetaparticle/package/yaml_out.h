// JSON -> YAML over libyaml's emitter, for the dry run: Kubernetes objects
// as a multi-document stream that `kubectl apply -f -` takes, and the rest
// (image config, container bodies) as YAML inside comments, which kubectl
// ignores.
#pragma once

#include <string>
#include <vector>

#include "json/json.h"

namespace mp::package {

// One YAML document per value, each starting with "---". Strings that would
// read back as another type (numbers, booleans, null, "") are quoted.
std::string to_yaml_documents(const std::vector<const cJSON *> &documents);

// `value` as YAML with every line prefixed by "# " (a comment block).
std::string to_yaml_comment(const cJSON *value);

// The dry run's output: a comment block with the image (reference, digest,
// config, manifest), the Docker containers and the warnings, then every
// Kubernetes object as a document. `rendered` is render_all()'s result.
std::string dry_run_yaml(const cJSON *rendered, const std::vector<std::string> &warnings);

}  // namespace mp::package
