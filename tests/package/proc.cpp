#include "proc.h"

#include <cstdio>

#include <regex>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

extern char **environ;

namespace mptest {

double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool Child::start(const std::vector<std::string> &argv, const std::vector<std::string> &env,
                  const std::string &log_file) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return false;
    std::vector<std::string> envs;
    for (char **e = environ; *e; ++e) {
        std::string s = *e;
        bool overridden = false;
        for (const auto &x : env) overridden = overridden || s.substr(0, s.find('=') + 1) == x.substr(0, x.find('=') + 1);
        if (!overridden) envs.push_back(s);
    }
    for (const auto &x : env) envs.push_back(x);
    std::vector<char *> av, ev;
    for (const auto &a : argv) av.push_back(const_cast<char *>(a.c_str()));
    av.push_back(nullptr);
    for (const auto &e : envs) ev.push_back(const_cast<char *>(e.c_str()));
    ev.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (log_file.empty()) {
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    } else {
        posix_spawn_file_actions_addopen(&fa, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    // Its own process group, so a test's SIGINT reaches only it.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, def;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigemptyset(&def);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &def);
    int rc = posix_spawnp(&pid, av[0], &fa, &attr, av.data(), ev.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        close(out[0]);
        close(err[0]);
        pid = -1;
        return false;
    }
    out_fd = out[0];
    err_fd = err[0];
    return true;
}

bool Child::read_line(int which, std::string *line, int timeout_ms) {
    int &fd = which == 2 ? err_fd : out_fd;
    std::string &buf = which == 2 ? err_buf : out_buf;
    double deadline = now_ms() + timeout_ms;
    while (true) {
        auto nl = buf.find('\n');
        if (nl != std::string::npos) {
            *line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            return true;
        }
        if (fd < 0) return false;
        int left = static_cast<int>(deadline - now_ms());
        if (left <= 0) return false;
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, left);
        if (pr <= 0) continue;
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0) {
            close(fd);
            fd = -1;
            if (!buf.empty()) {
                *line = buf;
                buf.clear();
                return true;
            }
            return false;
        }
        buf.append(tmp, static_cast<size_t>(n));
    }
}

bool Child::wait_for(int which, const std::string &needle, int timeout_ms, std::string *seen) {
    double deadline = now_ms() + timeout_ms;
    std::string line;
    while (true) {
        int left = static_cast<int>(deadline - now_ms());
        if (left <= 0) return false;
        if (!read_line(which, &line, left)) return false;
        if (seen) *seen += line + "\n";
        if (line.find(needle) != std::string::npos) return true;
    }
}

void Child::drain(int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    while ((out_fd >= 0 || err_fd >= 0) && now_ms() < deadline) {
        struct pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
        if (poll(p, 2, 100) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            int &fd = i == 0 ? out_fd : err_fd;
            if (fd < 0 || !(p[i].revents & (POLLIN | POLLHUP))) continue;
            char tmp[4096];
            ssize_t n = read(fd, tmp, sizeof tmp);
            if (n <= 0) {
                close(fd);
                fd = -1;
            } else {
                (i == 0 ? out_buf : err_buf).append(tmp, static_cast<size_t>(n));
            }
        }
    }
}

void Child::signal(int sig) {
    if (pid > 0) ::kill(pid, sig);
}

int Child::wait(int timeout_ms) {
    if (pid <= 0) return -1;
    double deadline = now_ms() + timeout_ms;
    while (true) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            pid = -1;
            return st;
        }
        if (now_ms() > deadline) return -1;
        // Keep the pipes flowing so the child never blocks on a full pipe.
        drain(50);
    }
}

void Child::kill_and_wait() {
    if (pid > 0) {
        ::kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        pid = -1;
    }
}

Child::~Child() {
    kill_and_wait();
    if (out_fd >= 0) close(out_fd);
    if (err_fd >= 0) close(err_fd);
}

std::string make_temp_dir(const std::string &prefix) {
    std::string tmpl = "/tmp/" + prefix + "XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) return "";
    return buf.data();
}

static int rm_one(const char *path, const struct stat *, int, struct FTW *) { return ::remove(path) == 0 ? 0 : 0; }

void remove_tree(const std::string &path) {
    if (path.size() > 5 && path.rfind("/tmp/", 0) == 0) nftw(path.c_str(), rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

void write_file(const std::string &path, const std::string &content) {
    std::ofstream f(path, std::ios::binary);
    f << content;
}

std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool have_program(const std::string &name) {
    const char *path = std::getenv("PATH");
    std::string p = path ? path : "/usr/bin:/bin";
    p += ":/usr/sbin:/sbin";
    size_t start = 0;
    while (start <= p.size()) {
        size_t c = p.find(':', start);
        if (c == std::string::npos) c = p.size();
        std::string cand = p.substr(start, c - start) + "/" + name;
        if (access(cand.c_str(), X_OK) == 0) return true;
        start = c + 1;
    }
    return false;
}

static bool port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
    close(fd);
    return ok;
}

int free_port_range(int count) {
    std::mt19937 rng(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(now_ms()));
    for (int attempt = 0; attempt < 200; ++attempt) {
        int base = 20000 + static_cast<int>(rng() % 30000);
        bool ok = true;
        for (int i = 0; i < count && ok; ++i) ok = port_free(base + i);
        if (ok) return base;
    }
    return -1;
}

bool start_registry(Registry *r, const std::string &parent_dir, const std::string &name,
                    const std::string &auth_yaml) {
    r->dir = parent_dir + "/" + name;
    mkdir(r->dir.c_str(), 0755);
    std::string cfg = "version: 0.1\n"
                      "log:\n  level: info\n"
                      "storage:\n  filesystem:\n    rootdirectory: " + r->dir + "/data\n  delete:\n    enabled: true\n"
                      "http:\n  addr: 127.0.0.1:0\n  secret: mptest-secret\n" + auth_yaml;
    write_file(r->dir + "/config.yml", cfg);
    std::string log = r->dir + "/registry.log";
    if (!r->child.start({"docker-registry", "serve", r->dir + "/config.yml"}, {}, log)) return false;
    std::regex re("listening on 127\\.0\\.0\\.1:([0-9]+)");
    double deadline = now_ms() + 20000;
    while (now_ms() < deadline) {
        std::smatch m;
        std::string text = read_file(log);
        if (std::regex_search(text, m, re)) {
            r->port = std::atoi(m[1].str().c_str());
            return true;
        }
        sleep_ms(50);
    }
    std::fprintf(stderr, "registry log:\n%s\n", read_file(log).c_str());
    return false;
}

}  // namespace mptest
