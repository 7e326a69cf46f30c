// Progress of the long steps of containerize (building each layer, pushing
// each blob): a bar redrawn in place when stderr is a terminal, else a line
// every few seconds (CI logs, pipes). Nothing when quiet.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace mp::package {

// (what, bytes done, bytes in all); done == total ends the step.
using ProgressFn = std::function<void(const std::string &what, uint64_t done, uint64_t total)>;

class ProgressPrinter {
public:
    // `tty`: redraw one line with a bar; else print periodic lines. Lines
    // start with `prefix` ("containerize: ").
    ProgressPrinter(bool tty, std::string prefix = "containerize: ", double line_interval_seconds = 2.0);
    ~ProgressPrinter();
    void update(const std::string &what, uint64_t done, uint64_t total);
    // Erase a bar in progress before a log line is printed.
    void clear();
    ProgressFn fn() {
        return [this](const std::string &w, uint64_t d, uint64_t t) { update(w, d, t); };
    }

private:
    bool tty_;
    std::string prefix_;
    std::chrono::steady_clock::duration interval_;
    std::mutex mu_;
    std::string current_;  // the step being shown
    bool bar_shown_ = false;
    std::chrono::steady_clock::time_point started_, last_;
};

// "3.4 MiB"
std::string human_size(uint64_t bytes);

}  // namespace mp::package
