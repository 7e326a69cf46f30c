#include "package/gzip.h"

#include <libdeflate.h>

#include <algorithm>
#include <new>

#include "common/error.h"

namespace mp::package {

GzipWriter::GzipWriter(Sink sink, int level) : sink_(std::move(sink)) {
    compressor_ = libdeflate_alloc_compressor(std::clamp(level, 1, 12));
    if (!compressor_) throw std::bad_alloc();
    in_.reserve(kMemberBytes);
}

GzipWriter::~GzipWriter() { libdeflate_free_compressor(static_cast<libdeflate_compressor *>(compressor_)); }

void GzipWriter::emit_member() {
    auto *c = static_cast<libdeflate_compressor *>(compressor_);
    out_.resize(libdeflate_gzip_compress_bound(c, in_.size()));
    size_t n = libdeflate_gzip_compress(c, in_.data(), in_.size(), out_.data(), out_.size());
    if (n == 0) throw Error(MP_ERROR, "internal: libdeflate could not compress a layer (output bound too small)");
    sink_(out_.data(), n);
    in_.clear();
    emitted_ = true;
}

void GzipWriter::write(const char *data, size_t len) {
    if (finished_) throw Error(MP_ESTATE, "internal: gzip written after finish");
    while (len > 0) {
        size_t take = std::min(len, kMemberBytes - in_.size());
        in_.append(data, take);
        data += take;
        len -= take;
        if (in_.size() == kMemberBytes) emit_member();
    }
}

void GzipWriter::finish() {
    if (finished_) return;
    // The rest, or one empty member: a gzip file has at least one.
    if (!in_.empty() || !emitted_) emit_member();
    finished_ = true;
    std::string().swap(in_);
    std::string().swap(out_);
}

}  // namespace mp::package
