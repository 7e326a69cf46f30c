// Clocks and timestamps. Decisions about expiry use the monotonic clock only
// (client-go's observed-time rule); wall-clock timestamps are informational.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace mp {

using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;
using Millis = std::chrono::milliseconds;

// Wall clock now, RFC 3339 UTC with microseconds ("2026-11-21T05:02:14.123456Z"),
// the MicroTime format Kubernetes uses.
std::string rfc3339_now();
std::string rfc3339(std::chrono::system_clock::time_point t);
// Parses RFC 3339 (with or without fraction, 'Z' or an offset).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string &s);

}  // namespace mp
