#include "package/progress.h"

#include <cstdio>
#include <utility>

namespace mp::package {

std::string human_size(uint64_t bytes) {
    char buf[32];
    if (bytes >= 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
    else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
    else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
}

ProgressPrinter::ProgressPrinter(bool tty, std::string prefix, double line_interval_seconds)
    : tty_(tty),
      prefix_(std::move(prefix)),
      interval_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(tty ? 0.1 : line_interval_seconds))) {}

ProgressPrinter::~ProgressPrinter() { clear(); }

void ProgressPrinter::clear() {
    std::lock_guard<std::mutex> lk(mu_);
    if (bar_shown_) {
        std::fputs("\r\033[K", stderr);
        std::fflush(stderr);
        bar_shown_ = false;
    }
}

void ProgressPrinter::update(const std::string &what, uint64_t done, uint64_t total) {
    std::lock_guard<std::mutex> lk(mu_);
    auto now = std::chrono::steady_clock::now();
    if (what != current_) {
        current_ = what;
        started_ = last_ = now;
        // A step that ends within the first interval shows nothing: its
        // summary line follows anyway, and short steps would only flicker.
        return;
    }
    if (total > 0 && done >= total) {  // finished: the caller logs the result
        if (bar_shown_) std::fputs("\r\033[K", stderr), std::fflush(stderr);
        bar_shown_ = false;
        return;
    }
    if (now - last_ < interval_) return;
    last_ = now;
    double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
    if (frac > 1) frac = 1;
    double secs = std::chrono::duration<double>(now - started_).count();
    double rate = secs > 0 ? done / secs : 0;
    char line[256];
    if (tty_) {
        constexpr int kWidth = 24;
        int filled = static_cast<int>(frac * kWidth);
        std::string bar(static_cast<size_t>(filled), '=');
        if (filled < kWidth) bar += '>';
        bar.resize(kWidth, ' ');
        std::snprintf(line, sizeof line, "\r\033[K%s%s [%s] %3d%% %s / %s  %s/s", prefix_.c_str(), what.c_str(), bar.c_str(),
                      static_cast<int>(frac * 100), human_size(done).c_str(), human_size(total).c_str(),
                      human_size(static_cast<uint64_t>(rate)).c_str());
        std::fputs(line, stderr);
        bar_shown_ = true;
    } else {
        std::snprintf(line, sizeof line, "%s%s: %s of %s (%d%%), %s/s\n", prefix_.c_str(), what.c_str(), human_size(done).c_str(),
                      human_size(total).c_str(), static_cast<int>(frac * 100),
                      human_size(static_cast<uint64_t>(rate)).c_str());
        std::fputs(line, stderr);
    }
    std::fflush(stderr);
}

}  // namespace mp::package
