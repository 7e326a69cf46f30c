#include "run_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace mp::sidecar {
namespace {

[[noreturn]] void fail(const std::string &what, const std::string &path) {
    throw std::runtime_error(what + " " + path + ": " + std::strerror(errno) +
                             " (mp-sidecar keeps fencing tokens increasing across restarts there; pass "
                             "--state-dir DIR with a writable directory)");
}

void make_dirs(const std::string &path) {
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i != path.size() && path[i] != '/') continue;
        std::string part = path.substr(0, i);
        if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) fail("cannot create", part);
    }
}

void sync_dir(const std::string &dir) {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

// Replace `path` with `text` durably: write a temporary file, fsync, rename.
void write_durably(const std::string &dir, const std::string &path, const std::string &text) {
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot write", tmp);
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        unlink(tmp.c_str());
        fail("cannot write", path);
    }
    sync_dir(dir);
}

}  // namespace

std::string RunState::default_dir() {
    if (const char *x = std::getenv("XDG_STATE_HOME"); x && *x == '/') return std::string(x) + "/mp-sidecar";
    if (const char *h = std::getenv("HOME"); h && *h == '/') return std::string(h) + "/.local/state/mp-sidecar";
    return "/tmp/mp-sidecar-" + std::to_string(getuid());
}

RunState::RunState(const std::string &dir, const std::string &marker) : dir_(dir) {
    make_dirs(dir_);
    // The epoch: read, increment and write back under an exclusive lock, so
    // sidecars starting at the same moment get different epochs.
    const std::string epoch_path = dir_ + "/epoch";
    int fd = open(epoch_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot open", epoch_path);
    if (flock(fd, LOCK_EX) != 0) {
        close(fd);
        fail("cannot lock", epoch_path);
    }
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    uint64_t previous = n > 0 ? std::strtoull(buf, nullptr, 10) : 0;
    epoch_ = previous + 1;
    std::string text = std::to_string(epoch_) + "\n";
    bool ok = ftruncate(fd, 0) == 0 && pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()) &&
              fsync(fd) == 0;
    close(fd);  // releases the lock
    if (!ok) fail("cannot write", epoch_path);
    sync_dir(dir_);
    if (epoch_ >= (uint64_t{1} << 21))
        throw std::runtime_error("the token epoch in " + epoch_path + " is exhausted; remove the file only after " +
                                 "making sure no fencing store holds tokens of this sidecar");

    if (marker.empty()) return;
    marker_path_ = dir_ + "/" + marker;
    fd = open(marker_path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char mbuf[32] = {0};
        ssize_t m = read(fd, mbuf, sizeof mbuf - 1);
        close(fd);
        grace_seconds_ = m > 0 ? std::atoi(mbuf) : 0;
        if (grace_seconds_ < 0) grace_seconds_ = 0;
        // Keep it: a crash during the grace period must not shorten the next one.
        recorded_ttl_ = grace_seconds_;
    }
}

void RunState::write_marker(int ttl_seconds) { write_durably(dir_, marker_path_, std::to_string(ttl_seconds) + "\n"); }

void RunState::note_ttl(int ttl_seconds) {
    if (marker_path_.empty()) return;
    std::lock_guard<std::mutex> g(mu_);
    if (ttl_seconds <= recorded_ttl_) return;
    write_marker(ttl_seconds);
    recorded_ttl_ = ttl_seconds;
}

void RunState::clean_exit() {
    if (marker_path_.empty()) return;
    std::lock_guard<std::mutex> g(mu_);
    unlink(marker_path_.c_str());
    sync_dir(dir_);
    recorded_ttl_ = 0;
}

}  // namespace mp::sidecar
