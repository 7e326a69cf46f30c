#include "package/elf.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace mp::package {
namespace {

// Upper bounds on what we are willing to read, so a corrupt header cannot
// make us allocate gigabytes.
constexpr uint64_t kMaxDynamicBytes = 1 << 20;
constexpr uint64_t kMaxStrtabBytes = 64 << 20;
constexpr size_t kMaxProgramHeaders = 4096;

class File {
public:
    explicit File(const std::string &path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) return;
        struct stat st;
        if (fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
    }
    ~File() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    uint64_t size() const { return size_; }
    // Reads exactly [off, off+len) or returns false (out of bounds or I/O error).
    bool read(uint64_t off, void *buf, uint64_t len) const {
        if (off > size_ || len > size_ - off) return false;
        char *p = static_cast<char *>(buf);
        while (len > 0) {
            ssize_t n = ::pread(fd_, p, static_cast<size_t>(len), static_cast<off_t>(off));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            p += n;
            off += static_cast<uint64_t>(n);
            len -= static_cast<uint64_t>(n);
        }
        return true;
    }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

[[noreturn]] void malformed(const std::string &path, const std::string &what) {
    throw Error(MP_ERROR, path + " is a malformed ELF file (" + what + "); cannot work out the libraries it needs");
}

struct Load {
    uint64_t vaddr, offset, filesz;
};

template <typename Ehdr, typename Phdr, typename Dyn>
ElfInfo parse(const File &f, const std::string &path) {
    ElfInfo info;
    Ehdr eh;
    if (!f.read(0, &eh, sizeof eh)) malformed(path, "truncated ELF header");
    info.elf_class = eh.e_ident[EI_CLASS];
    info.machine = eh.e_machine;
    if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) return info;  // objects, cores: nothing to load
    if (eh.e_phnum == 0) return info;
    if (eh.e_phnum == PN_XNUM || eh.e_phnum > kMaxProgramHeaders) malformed(path, "too many program headers");
    if (eh.e_phentsize < sizeof(Phdr)) malformed(path, "program header entries too small");

    std::vector<Load> loads;
    uint64_t dyn_off = 0, dyn_size = 0;
    bool has_dyn = false;
    for (size_t i = 0; i < eh.e_phnum; ++i) {
        Phdr ph;
        uint64_t off = static_cast<uint64_t>(eh.e_phoff) + i * static_cast<uint64_t>(eh.e_phentsize);
        if (!f.read(off, &ph, sizeof ph)) malformed(path, "program header " + std::to_string(i) + " outside the file");
        if (ph.p_type == PT_INTERP) {
            if (ph.p_filesz == 0 || ph.p_filesz > 4096) malformed(path, "bad PT_INTERP size");
            std::string s(static_cast<size_t>(ph.p_filesz), '\0');
            if (!f.read(ph.p_offset, &s[0], ph.p_filesz)) malformed(path, "PT_INTERP outside the file");
            s.resize(std::strlen(s.c_str()));
            info.interp = s;
        } else if (ph.p_type == PT_DYNAMIC) {
            has_dyn = true;
            dyn_off = ph.p_offset;
            dyn_size = ph.p_filesz;
        } else if (ph.p_type == PT_LOAD) {
            loads.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz});
        }
    }
    if (!has_dyn) return info;
    info.dynamic = true;
    if (dyn_size > kMaxDynamicBytes) malformed(path, "PT_DYNAMIC too large");
    size_t ndyn = static_cast<size_t>(dyn_size / sizeof(Dyn));
    std::vector<Dyn> dyn(ndyn);
    if (ndyn && !f.read(dyn_off, dyn.data(), ndyn * sizeof(Dyn))) malformed(path, "PT_DYNAMIC outside the file");

    uint64_t strtab_addr = 0, strsz = 0;
    bool has_strtab = false;
    std::vector<uint64_t> needed, rpath, runpath;
    for (const Dyn &d : dyn) {
        if (d.d_tag == DT_NULL) break;
        switch (d.d_tag) {
        case DT_NEEDED: needed.push_back(d.d_un.d_val); break;
        case DT_RPATH: rpath.push_back(d.d_un.d_val); break;
        case DT_RUNPATH: runpath.push_back(d.d_un.d_val); break;
        case DT_STRTAB: strtab_addr = d.d_un.d_ptr; has_strtab = true; break;
        case DT_STRSZ: strsz = d.d_un.d_val; break;
        default: break;
        }
    }
    if (needed.empty() && rpath.empty() && runpath.empty()) return info;
    if (!has_strtab || strsz == 0) malformed(path, "DT_NEEDED without a string table");
    if (strsz > kMaxStrtabBytes) malformed(path, "string table too large");
    // DT_STRTAB is a virtual address: map it to a file offset through the
    // PT_LOAD segment that contains it, as the loader would.
    std::optional<uint64_t> str_off;
    for (const Load &l : loads) {
        if (strtab_addr >= l.vaddr && strtab_addr - l.vaddr < l.filesz) {
            uint64_t within = strtab_addr - l.vaddr;
            if (strsz > l.filesz - within) malformed(path, "string table crosses its segment");
            str_off = l.offset + within;
            break;
        }
    }
    if (!str_off) malformed(path, "string table not inside any loaded segment");
    std::string strtab(static_cast<size_t>(strsz), '\0');
    if (!f.read(*str_off, &strtab[0], strsz)) malformed(path, "string table outside the file");
    auto str = [&](uint64_t off) -> std::string {
        if (off >= strsz) malformed(path, "string offset outside the string table");
        size_t end = strtab.find('\0', static_cast<size_t>(off));
        if (end == std::string::npos) malformed(path, "unterminated string");
        return strtab.substr(static_cast<size_t>(off), end - static_cast<size_t>(off));
    };
    auto split = [](const std::string &s, std::vector<std::string> &out) {
        size_t start = 0;
        while (start <= s.size()) {
            size_t colon = s.find(':', start);
            if (colon == std::string::npos) colon = s.size();
            // An empty entry means the current directory to ld.so; that is
            // never what an image wants, so it is dropped.
            if (colon > start) out.push_back(s.substr(start, colon - start));
            start = colon + 1;
        }
    };
    for (uint64_t o : needed) info.needed.push_back(str(o));
    for (uint64_t o : rpath) split(str(o), info.rpath);
    for (uint64_t o : runpath) split(str(o), info.runpath);
    return info;
}

bool is_file(const std::string &p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dirname_of(const std::string &p) {
    auto slash = p.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return p.substr(0, slash);
}

std::string multiarch(const ElfInfo &info) {
    switch (info.machine) {
    case EM_X86_64: return "x86_64-linux-gnu";
    case EM_386: return "i386-linux-gnu";
    case EM_AARCH64: return "aarch64-linux-gnu";
    case EM_ARM: return "arm-linux-gnueabihf";
    case EM_PPC64: return "powerpc64le-linux-gnu";
    case EM_S390: return "s390x-linux-gnu";
    case EM_RISCV: return "riscv64-linux-gnu";
    default: return "";
    }
}

std::string platform(const ElfInfo &info) {
    switch (info.machine) {
    case EM_X86_64: return "x86_64";
    case EM_386: return "i686";
    case EM_AARCH64: return "aarch64";
    default: return "";
    }
}

}  // namespace

bool is_elf_file(const std::string &path) {
    File f(path);
    unsigned char m[4];
    return f.ok() && f.read(0, m, 4) && std::memcmp(m, ELFMAG, SELFMAG) == 0;
}

std::optional<ElfInfo> read_elf(const std::string &path) {
    File f(path);
    if (!f.ok()) throw Error(MP_ERROR, "cannot open " + path + ": " + std::strerror(errno));
    unsigned char ident[EI_NIDENT];
    if (!f.read(0, ident, sizeof ident) || std::memcmp(ident, ELFMAG, SELFMAG) != 0) return std::nullopt;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const int native = ELFDATA2LSB;
#else
    const int native = ELFDATA2MSB;
#endif
    if (ident[EI_DATA] != native)
        throw Error(MP_ERROR, path + " is an ELF file for a machine of the other byte order; it cannot run here");
    if (ident[EI_CLASS] == ELFCLASS64) return parse<Elf64_Ehdr, Elf64_Phdr, Elf64_Dyn>(f, path);
    if (ident[EI_CLASS] == ELFCLASS32) return parse<Elf32_Ehdr, Elf32_Phdr, Elf32_Dyn>(f, path);
    malformed(path, "unknown ELF class " + std::to_string(ident[EI_CLASS]));
}

std::map<std::string, std::vector<std::string>> read_ld_so_cache(const std::string &path) {
    std::map<std::string, std::vector<std::string>> out;
    File f(path);
    if (!f.ok()) return out;
    static const char kOld[] = "ld.so-1.7.0";
    static const char kNew[] = "glibc-ld.so.cache1.1";
    uint64_t base = 0;
    char magic[20];
    if (!f.read(0, magic, sizeof magic)) return out;
    if (std::memcmp(magic, kOld, sizeof kOld - 1) == 0) {
        // Old header (magic[11] + pad, uint32 nlibs) and 12-byte entries,
        // then the new format, aligned to 8 bytes.
        uint32_t nlibs = 0;
        if (!f.read(12, &nlibs, 4)) return out;
        base = (16 + static_cast<uint64_t>(nlibs) * 12 + 7) & ~static_cast<uint64_t>(7);
        if (!f.read(base, magic, sizeof magic)) return out;
    }
    if (std::memcmp(magic, kNew, sizeof kNew - 1) != 0) return out;
    struct Header {
        char magic[17];
        char version[3];
        uint32_t nlibs;
        uint32_t len_strings;
        uint8_t flags;
        uint8_t pad[3];
        uint32_t extension_offset;
        uint32_t unused[3];
    } h;
    struct Entry {
        int32_t flags;
        uint32_t key, value;
        uint32_t osversion;
        uint64_t hwcap;
    };
    static_assert(sizeof(Header) == 48 && sizeof(Entry) == 24, "ld.so.cache layout");
    if (!f.read(base, &h, sizeof h)) return out;
    if (h.nlibs > (1u << 20)) return out;
    std::vector<Entry> entries(h.nlibs);
    if (h.nlibs && !f.read(base + sizeof h, entries.data(), entries.size() * sizeof(Entry))) return out;
    // String offsets in the new format are relative to its header.
    uint64_t size = f.size();
    auto str = [&](uint32_t off) -> std::optional<std::string> {
        uint64_t at = base + off;
        if (at >= size) return std::nullopt;
        std::string s;
        char buf[256];
        while (at < size) {
            uint64_t n = std::min<uint64_t>(sizeof buf, size - at);
            if (!f.read(at, buf, n)) return std::nullopt;
            const char *z = static_cast<const char *>(std::memchr(buf, 0, static_cast<size_t>(n)));
            if (z) {
                s.append(buf, static_cast<size_t>(z - buf));
                return s;
            }
            s.append(buf, static_cast<size_t>(n));
            at += n;
            if (s.size() > 4096) return std::nullopt;
        }
        return std::nullopt;
    };
    for (const Entry &e : entries) {
        auto k = str(e.key), v = str(e.value);
        if (k && v && !v->empty() && (*v)[0] == '/') out[*k].push_back(*v);
    }
    return out;
}

std::string expand_origin(const std::string &entry, const std::string &origin_dir, const ElfInfo &info) {
    std::string out;
    for (size_t i = 0; i < entry.size();) {
        if (entry[i] != '$') {
            out += entry[i++];
            continue;
        }
        std::string tok;
        size_t j = i + 1;
        if (j < entry.size() && entry[j] == '{') {
            size_t close = entry.find('}', j);
            if (close == std::string::npos) return "";
            tok = entry.substr(j + 1, close - j - 1);
            i = close + 1;
        } else {
            while (j < entry.size() && (std::isalnum(static_cast<unsigned char>(entry[j])) || entry[j] == '_')) ++j;
            tok = entry.substr(i + 1, j - i - 1);
            i = j;
        }
        if (tok == "ORIGIN") out += origin_dir;
        else if (tok == "LIB") out += info.elf_class == ELFCLASS64 ? "lib/" + multiarch(info) : "lib";
        else if (tok == "PLATFORM" && !platform(info).empty()) out += platform(info);
        else return "";
    }
    return out;
}

std::vector<std::string> default_library_dirs(const ElfInfo &info) {
    std::vector<std::string> dirs;
    std::string ma = multiarch(info);
    if (!ma.empty()) {
        dirs.push_back("/lib/" + ma);
        dirs.push_back("/usr/lib/" + ma);
    }
    if (info.elf_class == ELFCLASS64) {
        dirs.push_back("/lib64");
        dirs.push_back("/usr/lib64");
    }
    dirs.push_back("/lib");
    dirs.push_back("/usr/lib");
    return dirs;
}

LibraryClosure::LibraryClosure(std::string ld_so_cache) : cache_path_(std::move(ld_so_cache)) {}

bool LibraryClosure::compatible(const std::string &candidate, const ElfInfo &requester) {
    if (!is_file(candidate)) return false;
    try {
        auto info = read_elf(candidate);
        return info && info->elf_class == requester.elf_class && info->machine == requester.machine;
    } catch (const Error &) {
        return false;  // the loader skips unusable candidates too
    }
}

std::optional<std::string> LibraryClosure::find(const std::string &soname, const ElfInfo &requester,
                                                const std::vector<std::string> &dirs, bool *via_cache) {
    *via_cache = false;
    for (const auto &d : dirs) {
        std::string c = d + "/" + soname;
        if (compatible(c, requester)) return c;
    }
    if (!cache_loaded_) {
        cache_ = read_ld_so_cache(cache_path_);
        cache_loaded_ = true;
    }
    auto it = cache_.find(soname);
    if (it != cache_.end()) {
        for (const auto &c : it->second) {
            if (compatible(c, requester)) {
                *via_cache = true;
                return c;
            }
        }
    }
    for (const auto &d : default_library_dirs(requester)) {
        std::string c = d + "/" + soname;
        if (compatible(c, requester)) return c;
    }
    return std::nullopt;
}

void LibraryClosure::add(const std::string &path, bool strict) {
    if (visited_.count(path)) return;
    auto info = read_elf(path);
    if (!info || !info->dynamic) {
        visited_.insert(path);
        return;
    }
    visit(path, *info, Chain{}, strict, "");
}

void LibraryClosure::visit(const std::string &path, const ElfInfo &info, const Chain &chain, bool strict,
                           const std::string &requested_by) {
    (void)requested_by;
    if (!visited_.insert(path).second) return;
    if (!info.interp.empty()) {
        if (!is_file(info.interp)) {
            std::string msg = path + " needs the ELF interpreter " + info.interp + ", which is not on this machine";
            if (strict) throw Error(MP_ERROR, msg);
            warnings_.push_back(msg);
        } else {
            files_.insert(info.interp);
        }
    }
    std::string origin = dirname_of(path);
    auto expand_all = [&](const std::vector<std::string> &entries) {
        std::vector<std::string> out;
        for (const auto &e : entries) {
            std::string x = expand_origin(e, origin, info);
            if (!x.empty() && x[0] == '/') out.push_back(x);
        }
        return out;
    };
    // glibc: with DT_RUNPATH, only this object's RUNPATH is searched; without
    // it, this object's DT_RPATH and then its loaders' RPATHs.
    std::vector<std::string> dirs;
    Chain child_chain;
    if (!info.runpath.empty()) {
        dirs = expand_all(info.runpath);
    } else {
        dirs = expand_all(info.rpath);
        dirs.insert(dirs.end(), chain.rpath_dirs.begin(), chain.rpath_dirs.end());
        child_chain.rpath_dirs = dirs;
    }
    auto defaults = default_library_dirs(info);
    for (const auto &soname : info.needed) {
        std::string found;
        if (soname.find('/') != std::string::npos) {
            if (soname[0] == '/' && compatible(soname, info)) found = soname;
        } else if (auto it = by_soname_.find(soname); it != by_soname_.end()) {
            continue;  // already loaded under this soname: ld.so reuses it
        } else {
            bool via_cache = false;
            auto f = find(soname, info, dirs, &via_cache);
            if (f) {
                found = *f;
                std::string d = dirname_of(found);
                bool standard = false;
                for (const auto &s : defaults) standard = standard || s == d;
                if (via_cache && !standard) extra_dirs_.insert(d);
            }
        }
        if (found.empty()) {
            std::string where;
            for (const auto &d : dirs) where += d + ", ";
            std::string msg = "cannot find " + soname + " (needed by " + path + "); looked in " + where +
                              "/etc/ld.so.cache and the standard library directories. Install it, or add its "
                              "directory to the program's RUNPATH";
            if (strict) throw Error(MP_ERROR, msg);
            warnings_.push_back(msg);
            continue;
        }
        if (soname.find('/') == std::string::npos) by_soname_[soname] = found;
        files_.insert(found);
        auto child = read_elf(found);
        if (child && child->dynamic) visit(found, *child, child_chain, strict, path);
    }
}

std::vector<std::string> LibraryClosure::extra_library_dirs() const {
    return std::vector<std::string>(extra_dirs_.begin(), extra_dirs_.end());
}

}  // namespace mp::package
