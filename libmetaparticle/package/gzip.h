// Deterministic gzip compression (zlib): the gzip header zlib writes has no
// file name and mtime 0, so equal input gives equal bytes, as reproducible
// image layers require.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace mp::package {

class GzipWriter {
public:
    using Sink = std::function<void(const char *data, size_t len)>;
    // level: zlib 1 (fast) .. 9 (small).
    explicit GzipWriter(Sink sink, int level = 6);
    ~GzipWriter();
    GzipWriter(const GzipWriter &) = delete;
    GzipWriter &operator=(const GzipWriter &) = delete;

    void write(const char *data, size_t len);
    void finish();

private:
    void pump(int flush);
    Sink sink_;
    void *zs_;  // z_stream*
    bool finished_ = false;
    std::string out_;
};

}  // namespace mp::package
