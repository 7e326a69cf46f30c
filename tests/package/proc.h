// Test helpers: child processes with captured output, temp dirs, ports.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mptest {

struct Child {
    pid_t pid = -1;
    int out_fd = -1;  // child's stdout
    int err_fd = -1;  // child's stderr
    std::string out_buf, err_buf;  // unread data

    // Start argv with the extra environment "K=V" entries on top of ours.
    // With `log_file`, stdout and stderr both go to that file instead of pipes
    // (for chatty servers whose output nobody drains).
    bool start(const std::vector<std::string> &argv, const std::vector<std::string> &env = {},
               const std::string &log_file = "");
    // Read one line from stdout (fd 1) or stderr (fd 2) within timeout_ms.
    bool read_line(int which, std::string *line, int timeout_ms);
    // Wait for a line containing `needle` on `which`; every line read is
    // appended to *seen. Returns false on timeout or EOF.
    bool wait_for(int which, const std::string &needle, int timeout_ms, std::string *seen = nullptr);
    // Everything left on both pipes until EOF (or timeout).
    void drain(int timeout_ms);
    void signal(int sig);
    // Raw wait status, or -1 on timeout.
    int wait(int timeout_ms);
    void kill_and_wait();
    ~Child();
};

std::string make_temp_dir(const std::string &prefix);
void remove_tree(const std::string &path);
void write_file(const std::string &path, const std::string &content);
std::string read_file(const std::string &path);
bool have_program(const std::string &name);
// A TCP port p on 127.0.0.1 such that p .. p+count-1 are all free now.
int free_port_range(int count);
double now_ms();
void sleep_ms(int ms);

// A real docker-registry on 127.0.0.1 (port chosen by the registry).
struct Registry {
    Child child;
    int port = 0;
    std::string dir;
    std::string host() const { return "127.0.0.1:" + std::to_string(port); }
};

// Starts docker-registry with its storage and log under parent_dir/name and
// `auth_yaml` (may be "") appended to its config; false if it did not report
// its port in time (its log is printed then).
bool start_registry(Registry *r, const std::string &parent_dir, const std::string &name,
                    const std::string &auth_yaml = "");

}  // namespace mptest
