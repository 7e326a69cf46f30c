// libFuzzer target: the HTTP request path of mp-sidecar, the real server
// (sidecar/http_server.cpp) over the memory backend. The server is started
// once on 127.0.0.1:<free port>; each input is sent as raw bytes over a new
// loopback connection, whose write side is then closed. Checked:
//   - whatever the server sends back starts like an HTTP/1.1 response
//     (status line with a 3-digit code), or the server just closes;
//   - having seen the end of the input, the server answers what it got and
//     closes within 3 s (unless the input may park a long-poll or open a
//     session stream: "wait=" or "/session" in it);
//   - the server keeps serving: a GET /healthz on a fresh connection is
//     answered 200 after every input.
// State (locks taken by earlier inputs) carries over, as in a real sidecar.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "backends/backend.h"
#include "http_server.h"
#include "lock_service.h"
#include "log.h"

namespace {

using namespace mp::sidecar;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string &what) {
    std::fprintf(stderr, "fuzz_http_request: %s\n", what.c_str());
    std::abort();
}

struct Fixture {
    std::unique_ptr<Backend> backend = make_memory_backend(0, 4096);
    std::unique_ptr<LockService> service;
    std::unique_ptr<HttpServer> server;
    sockaddr_in addr{};

    Fixture() {
        log::set_level(log::Level::Error);
        service = std::make_unique<LockService>(*backend);
        ServerOptions opts;
        if (std::string why = parse_listen("127.0.0.1:0", &opts.listen); !why.empty()) die(why);
        opts.identity = "fuzz";
        opts.request_timeout = std::chrono::milliseconds(1000);
        opts.idle_timeout = std::chrono::milliseconds(1000);
        server = std::make_unique<HttpServer>(*service, *backend, opts);
        server->start();
        const std::string url = server->url();  // http://127.0.0.1:PORT
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(std::atoi(url.c_str() + url.rfind(':') + 1)));
    }

    int connect_fd() const {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket failed");
        if (::connect(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof addr) != 0) {
            // libFuzzer's -timeout ticks with SIGALRM every second: a signal
            // can interrupt connect(), which then completes on its own.
            if (errno != EINTR) die(std::string("cannot connect to the server: ") + std::strerror(errno));
            pollfd p{fd, POLLOUT, 0};
            while (::poll(&p, 1, 5000) < 0 && errno == EINTR) {
            }
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) die(std::string("cannot connect to the server: ") + std::strerror(err));
        }
        return fd;
    }
};

Fixture &fixture() {
    static Fixture *f = new Fixture();  // never destroyed: libFuzzer exits without unwinding
    return *f;
}

void send_all(int fd, const uint8_t *data, size_t size) {
    while (size > 0) {
        ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;  // SIGALRM of libFuzzer's -timeout
        if (n <= 0) return;  // the server may close early on garbage; that is allowed
        data += n;
        size -= static_cast<size_t>(n);
    }
}

// Reads until EOF or `deadline`; returns what arrived.
std::string read_until_close(int fd, Clock::time_point deadline, bool *closed) {
    std::string out;
    char buf[8192];
    *closed = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return out;
        pollfd p{fd, POLLIN, 0};
        int ready = ::poll(&p, 1, static_cast<int>(left));
        if (ready < 0 && errno == EINTR) continue;  // SIGALRM of libFuzzer's -timeout, not the server
        if (ready <= 0) return out;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *closed = true;
            return out;
        }
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > (8u << 20)) die("more than 8 MiB of response to one input");
    }
}

bool looks_like_status_line(const std::string &s) {
    return s.size() >= 12 && s.compare(0, 9, "HTTP/1.1 ") == 0 && std::isdigit(static_cast<unsigned char>(s[9])) &&
           std::isdigit(static_cast<unsigned char>(s[10])) && std::isdigit(static_cast<unsigned char>(s[11]));
}

void check_alive(Fixture &fx) {
    int fd = fx.connect_fd();
    static const char kReq[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send_all(fd, reinterpret_cast<const uint8_t *>(kReq), sizeof kReq - 1);
    bool closed;
    std::string resp = read_until_close(fd, Clock::now() + std::chrono::seconds(5), &closed);
    ::close(fd);
    if (resp.compare(0, 12, "HTTP/1.1 200") != 0)
        die("the server stopped serving: GET /healthz answered '" + resp.substr(0, 80) + "'");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Fixture &fx = fixture();
    int fd = fx.connect_fd();
    send_all(fd, data, size);
    ::shutdown(fd, SHUT_WR);
    // A parked long-poll or a session stream legitimately keeps the
    // connection open; do not wait long for those (closing our end is a
    // hang-up the server must cope with too). Anything else must be answered
    // and closed: a request that gets neither is a lost request.
    const std::string text(reinterpret_cast<const char *>(data), size);
    const bool may_stay_open = text.find("wait=") != std::string::npos || text.find("/session") != std::string::npos;
    bool closed;
    std::string resp = read_until_close(
        fd, Clock::now() + (may_stay_open ? std::chrono::milliseconds(300) : std::chrono::milliseconds(3000)), &closed);
    ::close(fd);
    if (!resp.empty() && !looks_like_status_line(resp))
        die("the answer does not start with an HTTP/1.1 status line: '" + resp.substr(0, 80) + "'");
    if (!may_stay_open && !closed)
        die("the server neither answered and closed nor closed within 3 s after the input ended (" +
            std::to_string(resp.size()) + " bytes of answer)");
    check_alive(fx);
    return 0;
}
