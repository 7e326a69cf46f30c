#include "kube/lock_crd.h"

#include "kube/yaml.h"

namespace mp::kube {

const ResourceRef kLockResource{"metaparticle.io", "v1", "locks", true};
const char *const kLockCrdName = "locks.metaparticle.io";

namespace {
// Keep byte-identical with deploy/crd.yaml.
const char kCrdYaml[] = R"YAML(# The Lock custom resource of Metaparticle (mp-sidecar --backend=kubernetes).
# mp-sidecar installs it itself when it may create CRDs; otherwise apply this
# file once as a cluster administrator:  kubectl apply -f deploy/crd.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: locks.metaparticle.io
  labels:
    app.kubernetes.io/name: metaparticle
    app.kubernetes.io/component: lock
spec:
  group: metaparticle.io
  scope: Namespaced
  names:
    kind: Lock
    listKind: LockList
    plural: locks
    singular: lock
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          description: A Metaparticle distributed lock. An empty spec.owner means the lock is free.
          properties:
            spec:
              type: object
              properties:
                owner:
                  type: string
                  description: Identity of the holder ("" when released).
                expiry:
                  type: string
                  format: date-time
                  description: renewTime + ttlSeconds by the holder's clock (informational; contenders use their own clocks).
                token:
                  type: integer
                  format: int64
                  minimum: 0
                  description: Fencing token, incremented on every change of holder.
                ttlSeconds:
                  type: integer
                  format: int32
                  minimum: 0
                  description: How long the lock stays held without renewal.
                acquireTime:
                  type: string
                  format: date-time
                  description: When the current holder acquired the lock (holder's clock).
                renewTime:
                  type: string
                  format: date-time
                  description: When the holder last renewed or released the lock (holder's clock).
      additionalPrinterColumns:
        - name: Owner
          type: string
          jsonPath: .spec.owner
        - name: Expiry
          type: string
          jsonPath: .spec.expiry
        - name: Token
          type: integer
          jsonPath: .spec.token
        - name: Age
          type: date
          jsonPath: .metadata.creationTimestamp
)YAML";
}  // namespace

const char *lock_crd_yaml() { return kCrdYaml; }

json::Ptr lock_crd() { return yaml_to_json(kCrdYaml, "the built-in Lock CRD"); }

}  // namespace mp::kube
