// A loopback HTTP/1.1 server for fuzz harnesses that exercise a client: it
// answers every request with the one response the current fuzz input chose
// (status and body), so the client's decoding of that answer is what gets
// fuzzed. One thread, one connection at a time, keep-alive, so a harness
// iteration costs one loopback round trip.
#pragma once

#include <mutex>
#include <string>
#include <thread>

namespace mp::fuzz {

class CannedHttpServer {
public:
    CannedHttpServer();   // listens on 127.0.0.1:<free port>; aborts if it cannot
    ~CannedHttpServer();  // never called by libFuzzer, which exits; kept for completeness

    // "http://127.0.0.1:<port>"
    std::string url() const { return url_; }
    // The answer to every request from now on.
    void set_response(int status, std::string body);

private:
    void serve();
    void serve_connection(int fd);

    int listen_fd_ = -1;
    std::string url_;
    std::mutex mu_;
    int status_ = 200;
    std::string body_;
    std::thread thread_;
};

}  // namespace mp::fuzz
