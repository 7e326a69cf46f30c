// Minimal leveled logging to stderr for mp-sidecar (stdout carries only the
// "listening on" line that supervisors and tests parse).
#pragma once

#include <string>

namespace mp::sidecar::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

// Parses "error", "warn"/"warning", "info", "debug"; false if unknown.
bool parse_level(const std::string &text, Level *out);
void set_level(Level level);
Level level();
bool enabled(Level level);

// One line per call, prefixed with an RFC 3339 time and the level. Thread-safe.
void write(Level level, const std::string &message);

inline void error(const std::string &m) { write(Level::Error, m); }
inline void warn(const std::string &m) { write(Level::Warn, m); }
inline void info(const std::string &m) { write(Level::Info, m); }
inline void debug(const std::string &m) {
    if (enabled(Level::Debug)) write(Level::Debug, m);
}

}  // namespace mp::sidecar::log
