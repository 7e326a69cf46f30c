// The default backend: lock records in a table inside the sidecar, for one
// machine without a cluster. Versions come from one counter, so every write
// gets a version no earlier write had (compare-and-swap stays sound even if a
// record is replaced several times between a read and an update).
#include <map>
#include <mutex>

#include "backends/backend.h"

namespace mp::sidecar {
namespace {

class MemoryBackend final : public Backend {
public:
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

private:
    std::string next_version() { return std::to_string(++counter_); }

    std::mutex mu_;
    std::map<std::string, LockRecord> records_;
    uint64_t counter_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_memory_backend() { return std::make_unique<MemoryBackend>(); }

}  // namespace mp::sidecar
