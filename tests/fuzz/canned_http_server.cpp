#include "canned_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace mp::fuzz {
namespace {

[[noreturn]] void die(const char *what) {
    std::perror(what);
    std::abort();
}

bool send_all(int fd, const std::string &data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

// Content-Length of a request head, 0 when absent. The peer is our own
// libcurl-based client, so this only needs to understand what libcurl sends
// (no chunked request bodies: the clients send sized bodies).
size_t content_length(const std::string &head) {
    size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != std::string::npos) {
        pos += 2;
        static const char kName[] = "content-length:";
        if (strncasecmp(head.c_str() + pos, kName, sizeof kName - 1) == 0)
            return std::strtoull(head.c_str() + pos + sizeof kName - 1, nullptr, 10);
    }
    return 0;
}

const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 409: return "Conflict";
    default: return "Status";
    }
}

}  // namespace

CannedHttpServer::CannedHttpServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) die("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) die("bind 127.0.0.1:0");
    if (::listen(listen_fd_, 16) != 0) die("listen");
    socklen_t len = sizeof addr;
    if (::getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len) != 0) die("getsockname");
    url_ = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    thread_ = std::thread([this] { serve(); });
}

CannedHttpServer::~CannedHttpServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    if (thread_.joinable()) thread_.join();
}

void CannedHttpServer::set_response(int status, std::string body) {
    std::lock_guard<std::mutex> g(mu_);
    status_ = status;
    body_ = std::move(body);
}

void CannedHttpServer::serve() {
    for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // closed by the destructor
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve_connection(fd);
        ::close(fd);
    }
}

void CannedHttpServer::serve_connection(int fd) {
    std::string in;
    char buf[16384];
    for (;;) {
        size_t head_end;
        while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) return;
            in.append(buf, static_cast<size_t>(n));
        }
        size_t need = head_end + 4 + content_length(in.substr(0, head_end + 2));
        while (in.size() < need) {
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) return;
            in.append(buf, static_cast<size_t>(n));
        }
        in.erase(0, need);

        std::string out;
        {
            std::lock_guard<std::mutex> g(mu_);
            out = "HTTP/1.1 " + std::to_string(status_) + " " + reason(status_) +
                  "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body_.size()) +
                  "\r\n\r\n" + body_;
        }
        if (!send_all(fd, out)) return;
    }
}

}  // namespace mp::fuzz
