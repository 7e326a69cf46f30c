// The Metaparticle Lock custom resource: locks.metaparticle.io/v1, kind Lock,
// namespaced (the storage of `mp-sidecar --backend=kubernetes`). The same
// definition ships as deploy/crd.yaml (a test checks they are equal).
#pragma once

#include "json/json.h"
#include "kube/client.h"

namespace mp::kube {

extern const ResourceRef kLockResource;       // metaparticle.io/v1 locks
extern const char *const kLockCrdName;        // "locks.metaparticle.io"

// The CustomResourceDefinition as YAML text (identical to deploy/crd.yaml).
const char *lock_crd_yaml();
// The same, parsed.
json::Ptr lock_crd();

}  // namespace mp::kube
