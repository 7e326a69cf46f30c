// Validation and defaults shared by the client library and the sidecar.
#pragma once

#include <string>

namespace mp {

// Lock names are Kubernetes object names: an RFC 1123 subdomain (lowercase
// alphanumerics, '-' and '.', each dot-separated label starting and ending
// with an alphanumeric), at most 253 characters. Returns "" when valid,
// otherwise a sentence saying what is wrong.
std::string validate_lock_name(const std::string &name);

// "<host name>/<pid>": the default holder identity of a process. In a pod the
// host name is the pod name, so processes sharing a pod stay distinct.
std::string default_identity();

// The sidecar base URL: `explicit_url` if non-empty, else
// $METAPARTICLE_SIDECAR, else http://127.0.0.1:13131. No trailing slash.
std::string sidecar_url(const char *explicit_url);

}  // namespace mp
