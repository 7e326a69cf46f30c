#include "common/time.h"

#include <cstdio>
#include <ctime>

namespace mp {

std::string rfc3339(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
    time_t secs = static_cast<time_t>(us / 1000000);
    long frac = static_cast<long>(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return buf;
}

std::string rfc3339_now() { return rfc3339(std::chrono::system_clock::now()); }

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string &s) {
    int y, mo, d, h, mi, sec;
    int n = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) return std::nullopt;
    size_t i = static_cast<size_t>(n);
    long micros = 0;
    if (i < s.size() && s[i] == '.') {
        ++i;
        long scale = 100000;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            micros += (s[i] - '0') * scale;
            scale /= 10;
            ++i;
        }
    }
    long offset = 0;
    if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
        ++i;
    } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
        int oh = 0, om = 0;
        if (std::sscanf(s.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2) return std::nullopt;
        offset = (oh * 3600L + om * 60L) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return std::nullopt;
    }
    if (i != s.size()) return std::nullopt;
    struct tm tm = {};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm) - offset;
    // system_clock counts nanoseconds in 64 bits: about 1678 to 2262. Times
    // outside (Go's zero time "0001-01-01T00:00:00Z" among them) are not
    // representable; callers keep the text as it is.
    constexpr time_t kLimit = 9000000000;  // ~2255
    if (t < -kLimit || t > kLimit) return std::nullopt;
    return std::chrono::system_clock::from_time_t(t) + std::chrono::microseconds(micros);
}

}  // namespace mp
