// What the memory backend must remember across restarts so that restarting
// mp-sidecar never breaks the lock guarantees (issue: a lock table in memory
// dies with the process, but its holders do not):
//
//  - an epoch, a machine-wide counter incremented durably at every start:
//    tokens of a run are (epoch << 32) + n, so they keep growing across
//    restarts although no lock record survives;
//  - a run marker per listen address, holding the longest TTL this address
//    has granted. It exists from the first grant until a clean shutdown with
//    no hold left behind. Finding it at start means the previous run crashed
//    (or left holds whose holders could not be told): grant nothing for that
//    long, so every holder from before reaches its renewal deadline, and
//    learns of its loss, before anyone else can take its lock (Chubby's
//    grace period).
//
// Port 0 (a random port) gets no marker: no client can come back to it.
#pragma once

#include <mutex>
#include <string>

namespace mp::sidecar {

class RunState {
public:
    // Opens (creating) `dir`; `marker` is the run marker's file name, "" for
    // none. Throws std::runtime_error saying what failed and what to do.
    RunState(const std::string &dir, const std::string &marker);

    uint64_t epoch() const { return epoch_; }
    // The longest TTL granted by earlier runs that did not end cleanly; 0 if none.
    int grace_seconds() const { return grace_seconds_; }
    // Before a hold with this TTL is granted: makes it durable if it is the longest yet.
    void note_ttl(int ttl_seconds);
    // A clean shutdown that left no hold behind: remove the marker.
    void clean_exit();

    // The default state directory: $XDG_STATE_HOME/mp-sidecar, else
    // ~/.local/state/mp-sidecar, else /tmp/mp-sidecar-<uid>.
    static std::string default_dir();

private:
    void write_marker(int ttl_seconds);

    std::string dir_;
    std::string marker_path_;
    uint64_t epoch_ = 0;
    int grace_seconds_ = 0;
    std::mutex mu_;
    int recorded_ttl_ = 0;
};

}  // namespace mp::sidecar
