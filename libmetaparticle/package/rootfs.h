// The file tree of one image layer, collected from the host before anything
// is written: absolute image paths -> what goes there. Symlinks met on the
// way are kept as symlinks (a library reached through a link gets both the
// link and its target), so the loader finds files under the same names it
// uses on the host.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mp::package {

struct RootfsEntry {
    enum Type { Directory, File, Symlink } type = File;
    unsigned mode = 0644;
    std::string host_path;  // File from the host ("" = `content`)
    std::string content;    // File generated in memory
    uint64_t size = 0;
    std::string link;       // Symlink target, as on the host
    // Identity of a host file when it was added (device, inode, change and
    // modification times): a layer cache key that changes whenever the
    // content may have (ctime cannot be set back by tools, unlike mtime).
    std::string identity;
};

class Rootfs {
public:
    // Called with each regular host file added, so the caller can find ELF
    // files among them. `explicit_path` is false for files found by walking
    // an included directory.
    using FileHook = std::function<void(const std::string &image_path, const std::string &host_path, bool explicit_path)>;
    void set_file_hook(FileHook hook) { hook_ = std::move(hook); }

    // Copy the host path `path` to the same path in the image. Every symlink
    // on the way (in any component) is recorded and followed; directories are
    // copied recursively (symlinks inside them are kept as links, and a link
    // to a file is followed so its target is there too). Throws
    // Error(MP_EINVAL) naming `what` when the path does not exist.
    void add_same_path(const std::string &path, const std::string &what);
    // Copy host `src` (file or directory, symlinks at the top followed) to
    // `dest` in the image.
    void add_copy(const std::string &src, const std::string &dest, const std::string &what);
    void add_directory(const std::string &path, unsigned mode);
    void add_content(const std::string &path, const std::string &content, unsigned mode);

    // Move the entries whose image path satisfies `pred` into a new Rootfs
    // (to put them in a layer of their own). Warnings stay here.
    Rootfs extract(const std::function<bool(const std::string &)> &pred);
    // Take every entry (and warning) of `other`; entries already here win.
    void merge(Rootfs &&other);

    bool contains(const std::string &path) const { return entries_.count(path) != 0; }
    // `path` itself or anything under it is in the tree (a directory copied
    // in part, as a binding copies its package's files).
    bool covers(const std::string &path) const {
        if (contains(path)) return true;
        auto it = entries_.lower_bound(path + "/");
        return it != entries_.end() && it->first.compare(0, path.size() + 1, path + "/") == 0;
    }
    const std::map<std::string, RootfsEntry> &entries() const { return entries_; }
    const std::vector<std::string> &warnings() const { return warnings_; }
    // Symlinks met inside copied directories that point to a directory
    // outside them (link path, resolved target): not followed. The caller
    // warns about those whose target no layer has.
    const std::vector<std::pair<std::string, std::string>> &dir_links() const { return dir_links_; }

    // A digest of everything write_tar would write (paths, types, modes,
    // links, inline contents, host file identities), for caching layers.
    std::string fingerprint(const std::function<bool(const std::string &)> &skip = {}) const;

    // The entries as tar, in sorted order with every parent directory,
    // mtime fixed, owner 0:0. Entries for which `skip(path)` is true are
    // left out (paths another layer already provides).
    void write_tar(const std::function<void(const char *, size_t)> &sink, int64_t mtime,
                   const std::function<bool(const std::string &)> &skip = {}) const;

private:
    void put(const std::string &path, RootfsEntry e);
    void add_walk(const std::string &path, const std::string &what, int depth, bool explicit_path);
    void add_tree(const std::string &host_dir, const std::string &image_dir, bool same_path, int depth);
    void add_file(const std::string &image_path, const std::string &host_path, const struct ::stat &st,
                  bool explicit_path);

    std::map<std::string, RootfsEntry> entries_;
    std::vector<std::string> warnings_;
    std::vector<std::pair<std::string, std::string>> dir_links_;
    FileHook hook_;
};

// Normalise an absolute path: collapse "//", drop "." and resolve "..".
std::string normalize_path(const std::string &path);

}  // namespace mp::package
