// libFuzzer target: how mp-sidecar's Kubernetes backends decode the API
// server's answers about Lock custom resources and Leases
// (sidecar/backends/kube_backend_common.cpp, crd_backend.cpp,
// lease_backend.cpp, over kube::Client). The decoding is only reachable
// through a request, so a loopback server answers every request with the
// status and body taken from the input:
//   byte 0: bit 0 = backend (0 Lock CRD, 1 Lease), bits 1-2 = operation
//           (get, list, create, get then update)
//   byte 1: HTTP status (index into kStatuses)
//   rest:   the response body (a Lock/Lease object, a list, a Status...)
// Accepted outcomes: a result or BackendError. Anything else escaping, a
// crash or undefined behaviour is a finding.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "backends/backend.h"
#include "canned_http_server.h"
#include "common/error.h"
#include "log.h"

namespace {

using mp::sidecar::Backend;
using mp::sidecar::BackendError;
using mp::sidecar::LockRecord;
using mp::sidecar::StoreResult;

// Statuses the API server sends. No 429: the client honours Retry-After
// with a sleep, which would only slow the fuzzer down.
constexpr int kStatuses[] = {200, 201, 404, 409, 410, 500, 503, 400, 401, 403, 422, 504, 302, 204};

struct Fixture {
    mp::fuzz::CannedHttpServer server;
    std::string kubeconfig;

    Fixture() {
        mp::sidecar::log::set_level(mp::sidecar::log::Level::Error);
        char dir[] = "/tmp/mp-fuzz-kube-XXXXXX";
        if (!mkdtemp(dir)) {
            std::perror("mkdtemp");
            std::abort();
        }
        kubeconfig = std::string(dir) + "/config";
        std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\ncurrent-context: fuzz\n"
                                     "clusters:\n- name: fuzz\n  cluster:\n    server: "
                                  << server.url()
                                  << "\ncontexts:\n- name: fuzz\n  context:\n    cluster: fuzz\n"
                                     "    namespace: fuzz\nusers: []\n";
    }
};

Fixture &fixture() {
    static Fixture *f = new Fixture();  // never destroyed: libFuzzer exits without unwinding
    return *f;
}

LockRecord sample_record() {
    LockRecord rec;
    rec.name = "fuzz-lock";
    rec.owner = "owner-a";
    rec.token = 7;
    rec.ttl_seconds = 15;
    rec.acquire_time = "2026-01-02T03:04:05.000006Z";
    rec.renew_time = "2026-01-02T03:04:06Z";
    return rec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return -1;  // not a usable input; keep it out of the corpus
    Fixture &fx = fixture();
    const bool lease = data[0] & 1;
    const int op = (data[0] >> 1) & 3;
    const int status = kStatuses[data[1] % (sizeof kStatuses / sizeof kStatuses[0])];
    fx.server.set_response(status, std::string(reinterpret_cast<const char *>(data + 2), size - 2));

    // A fresh backend per input: its object cache makes results depend on
    // earlier inputs otherwise, and would grow with every fuzzed name.
    mp::sidecar::KubeBackendOptions opts;
    opts.kubeconfig = fx.kubeconfig;
    std::unique_ptr<Backend> backend = lease ? mp::sidecar::make_lease_backend(opts) : mp::sidecar::make_crd_backend(opts);
    try {
        LockRecord rec = sample_record();
        switch (op) {
        case 0:
            backend->get("fuzz-lock", &rec);
            break;
        case 1:
            backend->list();
            break;
        case 2:
            if (backend->create(&rec) == StoreResult::Ok && rec.version.empty()) {
                std::fprintf(stderr, "create succeeded without a resourceVersion\n");
                std::abort();
            }
            break;
        case 3:
            if (backend->get("fuzz-lock", &rec) == StoreResult::Ok) {
                rec.owner = "owner-b";
                rec.token += 1;
                if (rec.version.empty()) rec.version = "1";
                if (backend->update(&rec) == StoreResult::Ok && rec.version.empty()) {
                    std::fprintf(stderr, "update succeeded without a resourceVersion\n");
                    std::abort();
                }
            }
            break;
        }
    } catch (const BackendError &) {
    }
    return 0;
}
