#include "log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "common/time.h"

namespace mp::sidecar::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::mutex g_mu;
const char *name_of(Level l) {
    switch (l) {
    case Level::Error: return "error";
    case Level::Warn: return "warn";
    case Level::Info: return "info";
    case Level::Debug: return "debug";
    }
    return "?";
}
}  // namespace

bool parse_level(const std::string &t, Level *out) {
    if (t == "error") *out = Level::Error;
    else if (t == "warn" || t == "warning") *out = Level::Warn;
    else if (t == "info") *out = Level::Info;
    else if (t == "debug") *out = Level::Debug;
    else return false;
    return true;
}

void set_level(Level level) { g_level.store(static_cast<int>(level)); }

Level level() { return static_cast<Level>(g_level.load()); }

bool enabled(Level level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }

void write(Level level, const std::string &message) {
    if (!enabled(level)) return;
    std::string line = mp::rfc3339_now() + " " + name_of(level) + " " + message + "\n";
    std::lock_guard<std::mutex> g(g_mu);
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
}

}  // namespace mp::sidecar::log
