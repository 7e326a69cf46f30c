// libFuzzer target: how the library decodes mp-sidecar's answers
// (libmetaparticle/sync/sidecar_client.cpp over http::Client). A loopback
// server answers every request with the status and body from the input:
//   byte 0: operation (acquire, acquire with wait, release, read)
//   byte 1: HTTP status (index into kStatuses)
//   rest:   the response body
// Accepted outcomes: a result or mp::Error; the client must never report a
// lock as acquired by anyone but the caller. Anything else escaping, a crash
// or undefined behaviour is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "canned_http_server.h"
#include "common/error.h"
#include "sync/sidecar_client.h"

namespace {

constexpr int kStatuses[] = {200, 409, 404, 400, 500, 503, 201, 204, 401, 403, 410, 502, 301};

struct Fixture {
    mp::fuzz::CannedHttpServer server;
    mp::sync::SidecarClient client{server.url()};
};

Fixture &fixture() {
    static Fixture *f = new Fixture();  // never destroyed: libFuzzer exits without unwinding
    return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return -1;
    Fixture &fx = fixture();
    const int op = data[0] & 3;
    const int status = kStatuses[data[1] % (sizeof kStatuses / sizeof kStatuses[0])];
    fx.server.set_response(status, std::string(reinterpret_cast<const char *>(data + 2), size - 2));
    const long timeout_ms = 5000;
    try {
        switch (op) {
        case 0:
        case 1: {
            auto r = fx.client.put("fuzz-lock", "me", 15, op == 1 ? 1000 : 0, timeout_ms, nullptr);
            if (r.acquired && status != 200) {
                std::fprintf(stderr, "HTTP %d was decoded as acquired\n", status);
                std::abort();
            }
            break;
        }
        case 2:
            fx.client.release("fuzz-lock", "me", 7, timeout_ms);
            break;
        case 3:
            fx.client.get("fuzz-lock", timeout_ms);
            break;
        }
    } catch (const mp::Error &) {
    }
    return 0;
}
