#include "package/gzip.h"

#include <zlib.h>

#include <new>

#include "common/error.h"

namespace mp::package {

GzipWriter::GzipWriter(Sink sink, int level) : sink_(std::move(sink)), out_(256 * 1024, '\0') {
    auto *zs = new z_stream();
    // windowBits 15 + 16: a gzip wrapper with zlib's default header (no name,
    // mtime 0, OS = the build platform's code): deterministic.
    if (deflateInit2(zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        delete zs;
        throw Error(MP_ERROR, "zlib could not initialise gzip compression");
    }
    zs_ = zs;
}

GzipWriter::~GzipWriter() {
    auto *zs = static_cast<z_stream *>(zs_);
    deflateEnd(zs);
    delete zs;
}

void GzipWriter::pump(int flush) {
    auto *zs = static_cast<z_stream *>(zs_);
    while (true) {
        zs->next_out = reinterpret_cast<Bytef *>(&out_[0]);
        zs->avail_out = static_cast<uInt>(out_.size());
        int rc = deflate(zs, flush);
        if (rc == Z_STREAM_ERROR) throw Error(MP_ERROR, "zlib deflate failed");
        size_t have = out_.size() - zs->avail_out;
        if (have) sink_(out_.data(), have);
        if (flush == Z_FINISH) {
            if (rc == Z_STREAM_END) return;
        } else if (zs->avail_in == 0 && zs->avail_out != 0) {
            return;
        }
    }
}

void GzipWriter::write(const char *data, size_t len) {
    if (finished_) throw Error(MP_ESTATE, "internal: gzip written after finish");
    auto *zs = static_cast<z_stream *>(zs_);
    while (len > 0) {
        // avail_in is 32-bit: feed huge buffers in slices.
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        zs->next_in = reinterpret_cast<Bytef *>(const_cast<char *>(data));
        zs->avail_in = static_cast<uInt>(chunk);
        pump(Z_NO_FLUSH);
        data += chunk;
        len -= chunk;
    }
}

void GzipWriter::finish() {
    if (finished_) return;
    auto *zs = static_cast<z_stream *>(zs_);
    zs->next_in = nullptr;
    zs->avail_in = 0;
    pump(Z_FINISH);
    finished_ = true;
}

}  // namespace mp::package
