// The default backend: lock records in a table inside the sidecar, for one
// machine without a cluster. Versions come from one counter, so every write
// gets a version no earlier write had (compare-and-swap stays sound even if a
// record is replaced several times between a read and an update).
//
// Fencing tokens come from one counter per run, not from the record: token =
// (epoch << 32) + n. Each run starts in a larger epoch (state_file.h), so a
// token granted after a restart is larger than any granted before it, and a
// released record can be deleted (reclaim) without its name's tokens ever
// going back.
#include <map>
#include <mutex>

#include "backends/backend.h"

namespace mp::sidecar {
namespace {

class MemoryBackend final : public Backend {
public:
    MemoryBackend(uint64_t epoch, size_t max_locks) : token_base_(epoch << 32), max_locks_(max_locks) {}

    std::string describe() const override { return "memory (locks live in this process only)"; }

    // Nothing changes outside this process, so `on_change` is never called:
    // LockService already knows about every write.
    void start(std::function<void(const std::string &)>) override {}
    void stop() override {}

    StoreResult get(const std::string &name, LockRecord *out) override {
        std::lock_guard<std::mutex> g(mu_);
        auto it = records_.find(name);
        if (it == records_.end()) return StoreResult::NotFound;
        *out = it->second;
        return StoreResult::Ok;
    }

    StoreResult create(LockRecord *rec) override {
        std::lock_guard<std::mutex> g(mu_);
        if (records_.count(rec->name)) return StoreResult::Conflict;
        if (records_.size() >= max_locks_)
            throw LimitError("mp-sidecar already keeps " + std::to_string(max_locks_) +
                             " locks (--max-locks); release some (released locks are forgotten after a while) "
                             "or raise the limit");
        rec->version = next_version();
        records_.emplace(rec->name, *rec);
        return StoreResult::Ok;
    }

    StoreResult update(LockRecord *rec) override {
        std::lock_guard<std::mutex> g(mu_);
        auto it = records_.find(rec->name);
        if (it == records_.end()) return StoreResult::NotFound;
        if (it->second.version != rec->version) return StoreResult::Conflict;
        rec->version = next_version();
        it->second = *rec;
        return StoreResult::Ok;
    }

    std::vector<LockRecord> list() override {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<LockRecord> out;
        out.reserve(records_.size());
        for (const auto &kv : records_) out.push_back(kv.second);
        return out;
    }

    bool ready(std::string *) override { return true; }

    uint64_t next_token(uint64_t current) override {
        std::lock_guard<std::mutex> g(mu_);
        uint64_t t = token_base_ + ++tokens_;
        return t > current ? t : current + 1;
    }

    bool reclaim(const LockRecord &rec) override {
        std::lock_guard<std::mutex> g(mu_);
        auto it = records_.find(rec.name);
        if (it == records_.end() || it->second.version != rec.version || !it->second.owner.empty()) return false;
        records_.erase(it);
        return true;
    }

    bool blocking() const override { return false; }

private:
    std::string next_version() { return std::to_string(++counter_); }

    const uint64_t token_base_;
    const size_t max_locks_;
    std::mutex mu_;
    std::map<std::string, LockRecord> records_;
    uint64_t counter_ = 0;
    uint64_t tokens_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_memory_backend(uint64_t epoch, size_t max_locks) {
    return std::make_unique<MemoryBackend>(epoch, max_locks);
}

}  // namespace mp::sidecar
