// A small, deterministic tar writer (POSIX ustar, with pax extended headers
// for names and link targets that do not fit ustar's fields).
//
// Why not libarchive: the image build needs only three entry types (regular
// file, directory, symlink), full control over every header byte (mtime,
// uid/gid 0, empty user/group names, no atime/ctime pax records) so the same
// input always gives the same bytes, and streaming into a hash + gzip without
// temporary files. That is ~200 lines here versus a new dependency whose
// defaults (pax timestamps, uname lookup) would all have to be overridden.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mp::package {

class TarWriter {
public:
    // Every byte of the archive goes to `sink`, in order.
    using Sink = std::function<void(const char *data, size_t len)>;
    explicit TarWriter(Sink sink, int64_t mtime = 0) : sink_(std::move(sink)), mtime_(mtime) {}

    // `path` is relative to the archive root, without a leading '/' (it is
    // stripped if present) and without a trailing '/'.
    void add_directory(const std::string &path, unsigned mode);
    void add_symlink(const std::string &path, const std::string &target);
    void add_file(const std::string &path, unsigned mode, const std::string &content);
    // Streams the host file `host_path` (which must be `size` bytes; a file
    // that changes size while it is read is an error, not a corrupt layer).
    void add_host_file(const std::string &path, unsigned mode, const std::string &host_path, uint64_t size);
    // The two zero blocks that end an archive.
    void finish();

    uint64_t bytes_written() const { return written_; }

private:
    void header(const std::string &path, char type, unsigned mode, uint64_t size, const std::string &link);
    void write(const char *data, size_t len);
    void pad(uint64_t size);

    Sink sink_;
    int64_t mtime_;
    uint64_t written_ = 0;
};

}  // namespace mp::package
