// What the dynamic loader needs to start a program: the ELF interpreter
// (PT_INTERP) and the shared-library closure (DT_NEEDED, resolved through
// DT_RPATH / DT_RUNPATH, /etc/ld.so.cache and the system directories, the
// way glibc's ld.so does). Read with <elf.h> structures, every offset and
// size checked against the file, so a hostile or truncated file is an error
// and never an out-of-bounds read.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mp::package {

struct ElfInfo {
    int elf_class = 0;     // ELFCLASS32 / ELFCLASS64
    int machine = 0;       // e_machine
    bool dynamic = false;  // has PT_DYNAMIC (needs the loader)
    std::string interp;    // PT_INTERP, "" when static
    std::vector<std::string> needed;
    std::vector<std::string> rpath;    // DT_RPATH entries, unexpanded
    std::vector<std::string> runpath;  // DT_RUNPATH entries, unexpanded
};

// True when the file starts with the ELF magic (cheap: reads 4 bytes).
bool is_elf_file(const std::string &path);

// Parse an ELF executable or shared object. Returns nullopt when `path` is
// not an ELF file at all; throws Error(MP_ERROR) when it is an ELF file that
// is malformed or of a kind the loader cannot run (other byte order,
// relocatable object), saying which.
std::optional<ElfInfo> read_elf(const std::string &path);

// /etc/ld.so.cache: soname -> candidate paths, in the cache's preference
// order. Only the "glibc-ld.so.cache1.1" format (glibc >= 2.32, also found
// appended to the old format) is read; an absent or unknown cache is empty,
// and resolution falls back to the standard directories.
std::map<std::string, std::vector<std::string>> read_ld_so_cache(const std::string &path = "/etc/ld.so.cache");

// The shared-library closure of a set of ELF files.
class LibraryClosure {
public:
    explicit LibraryClosure(std::string ld_so_cache = "/etc/ld.so.cache");

    // Add `path` (an ELF file at that absolute path on the host and in the
    // image) and everything it loads. Not-ELF and static files add nothing.
    // A dependency that cannot be found throws Error(MP_ERROR) naming it and
    // where it was looked for when `strict`; otherwise it becomes a warning
    // (used for plugins inside included directories that may never load).
    void add(const std::string &path, bool strict);

    // Every file the image needs: the libraries (as found, before symlinks
    // are resolved, so the rootfs builder keeps the links) and interpreters.
    const std::set<std::string> &files() const { return files_; }
    // Directories holding libraries that were found only through
    // /etc/ld.so.cache (which the image does not have) and are not standard
    // directories: the image sets LD_LIBRARY_PATH to them.
    std::vector<std::string> extra_library_dirs() const;
    const std::vector<std::string> &warnings() const { return warnings_; }

private:
    struct Chain {
        std::vector<std::string> rpath_dirs;  // expanded RPATH dirs inherited from loaders
    };
    void visit(const std::string &path, const ElfInfo &info, const Chain &chain, bool strict,
               const std::string &requested_by);
    std::optional<std::string> find(const std::string &soname, const ElfInfo &requester,
                                    const std::vector<std::string> &dirs, bool *via_cache);
    bool compatible(const std::string &candidate, const ElfInfo &requester);

    std::string cache_path_;
    bool cache_loaded_ = false;
    std::map<std::string, std::vector<std::string>> cache_;
    std::set<std::string> files_;
    std::set<std::string> visited_;            // objects already scanned
    std::map<std::string, std::string> by_soname_;  // soname -> path (the loader shares a soname once loaded)
    std::set<std::string> extra_dirs_;
    std::vector<std::string> warnings_;
};

// Expand $ORIGIN / ${ORIGIN}, $LIB, $PLATFORM in one RPATH/RUNPATH entry;
// "" when the entry uses a token we cannot expand (it is then skipped).
std::string expand_origin(const std::string &entry, const std::string &origin_dir, const ElfInfo &info);

// Standard library directories searched by the loader, for this ELF kind.
std::vector<std::string> default_library_dirs(const ElfInfo &info);

}  // namespace mp::package
