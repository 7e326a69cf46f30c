// YAML -> JSON conversion over libyaml, for kubeconfig files and Kubernetes
// manifests. libyaml does the parsing (anchors, aliases, flow and block
// styles, multi-document streams); this only maps the node graph onto cJSON.
//
// Plain (unquoted, untagged) scalars are typed with the YAML 1.2 core schema:
// null/~/empty -> null, true/false -> bool, integers and floats -> number,
// everything else -> string. Quoted scalars are always strings; the tags
// !!int, !!float, !!bool and !!null are honoured. (libyaml's document API
// gives untagged scalars the !!str tag, so `!!str 12` reads as 12: quote it.)
#pragma once

#include <string>
#include <vector>

#include "json/json.h"

namespace mp::kube {

// Parse the first document of `text`. An empty stream gives JSON null.
// Throws mp::Error(MP_EINVAL) naming `source`, line and column on a syntax error.
json::Ptr yaml_to_json(const std::string &text, const std::string &source = "YAML");

// Parse every document of a multi-document stream ("---" separated). Empty
// documents are skipped.
std::vector<json::Ptr> yaml_to_json_all(const std::string &text, const std::string &source = "YAML");

}  // namespace mp::kube
