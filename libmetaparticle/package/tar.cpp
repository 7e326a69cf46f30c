#include "package/tar.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace mp::package {
namespace {

constexpr size_t kBlock = 512;

// Writes `value` as zero-padded octal filling width-1 digits plus a NUL.
// Returns false when it does not fit (the caller then uses a pax record).
bool put_octal(char *field, size_t width, uint64_t value) {
    char buf[32];
    int n = std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(value));
    if (n < 0 || static_cast<size_t>(n) > width - 1) return false;
    std::memcpy(field, buf, width - 1);
    field[width - 1] = '\0';
    return true;
}

// One pax record "<len> key=value\n", where <len> counts the whole record.
std::string pax_record(const std::string &key, const std::string &value) {
    size_t body = 1 + key.size() + 1 + value.size() + 1;  // ' ' key '=' value '\n'
    size_t len = body + 1;
    while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
    return std::to_string(len) + " " + key + "=" + value + "\n";
}

std::string clean(const std::string &path) {
    size_t b = 0;
    while (b < path.size() && path[b] == '/') ++b;
    std::string p = path.substr(b);
    while (!p.empty() && p.back() == '/') p.pop_back();
    if (p.empty()) throw Error(MP_EINVAL, "internal: empty tar entry name");
    return p;
}

}  // namespace

void TarWriter::write(const char *data, size_t len) {
    if (len == 0) return;
    sink_(data, len);
    written_ += len;
}

void TarWriter::pad(uint64_t size) {
    static const char zeros[kBlock] = {0};
    size_t rem = static_cast<size_t>(size % kBlock);
    if (rem) write(zeros, kBlock - rem);
}

void TarWriter::header(const std::string &path, char type, unsigned mode, uint64_t size, const std::string &link) {
    char h[kBlock];
    std::memset(h, 0, sizeof h);

    std::string pax;
    // Name: fits in name[100], or splits at a '/' into prefix[155] + name[100].
    std::string name = path, prefix;
    if (name.size() > 100) {
        bool split = false;
        for (size_t i = name.size() - 1; i > 0; --i) {
            if (name[i] != '/') continue;
            size_t plen = i, nlen = name.size() - i - 1;
            if (plen <= 155 && nlen <= 100 && nlen > 0) {
                prefix = name.substr(0, i);
                name = name.substr(i + 1);
                split = true;
                break;
            }
            if (nlen > 100) break;  // further left only makes the name part longer
        }
        if (!split) {
            pax += pax_record("path", path);
            name = path.substr(0, 100);
            prefix.clear();
        }
    }
    if (link.size() > 100) pax += pax_record("linkpath", link);
    bool size_fits = size <= 077777777777ULL;
    if (!size_fits) pax += pax_record("size", std::to_string(size));

    if (!pax.empty()) {
        // The extended header entry: a fixed name keeps the output deterministic.
        header("././@PaxHeader", 'x', 0644, pax.size(), "");
        write(pax.data(), pax.size());
        pad(pax.size());
    }

    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    put_octal(h + 100, 8, mode & 07777);
    put_octal(h + 108, 8, 0);  // uid
    put_octal(h + 116, 8, 0);  // gid
    if (!put_octal(h + 124, 12, size_fits ? size : 0)) throw Error(MP_ERROR, "internal: tar size field overflow");
    put_octal(h + 136, 12, static_cast<uint64_t>(mtime_ < 0 ? 0 : mtime_));
    h[156] = type;
    std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(h + 257, "ustar", 6);  // magic "ustar\0"
    std::memcpy(h + 263, "00", 2);     // version
    // uname/gname stay empty: a numeric uid/gid 0 is all a container needs,
    // and names would make the bytes depend on the build machine.
    put_octal(h + 329, 8, 0);
    put_octal(h + 337, 8, 0);
    std::memcpy(h + 345, prefix.data(), std::min<size_t>(prefix.size(), 155));

    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(h[i]);
    std::snprintf(h + 148, 8, "%06o", sum);  // 6 digits, NUL, then the space set above
    h[155] = ' ';
    write(h, kBlock);
}

void TarWriter::add_directory(const std::string &path, unsigned mode) {
    header(clean(path) + "/", '5', mode, 0, "");
}

void TarWriter::add_symlink(const std::string &path, const std::string &target) {
    header(clean(path), '2', 0777, 0, target);
}

void TarWriter::add_file(const std::string &path, unsigned mode, const std::string &content) {
    header(clean(path), '0', mode, content.size(), "");
    write(content.data(), content.size());
    pad(content.size());
}

void TarWriter::add_host_file(const std::string &path, unsigned mode, const std::string &host_path, uint64_t size) {
    int fd = ::open(host_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(MP_ERROR, "cannot read " + host_path + " for the image: " + std::strerror(errno));
    header(clean(path), '0', mode, size, "");
    std::vector<char> buf(256 * 1024);
    uint64_t left = size;
    while (left > 0) {
        ssize_t n = ::read(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            ::close(fd);
            throw Error(MP_ERROR, "reading " + host_path + " for the image: " +
                                      (n == 0 ? std::string("the file shrank while it was read; try again") : std::strerror(e)));
        }
        write(buf.data(), static_cast<size_t>(n));
        left -= static_cast<uint64_t>(n);
    }
    ::close(fd);
    pad(size);
}

void TarWriter::finish() {
    static const char zeros[2 * kBlock] = {0};
    write(zeros, sizeof zeros);
}

}  // namespace mp::package
