#include "package/rootfs.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "common/error.h"
#include "package/digest.h"
#include "package/tar.h"

namespace mp::package {
namespace {

constexpr int kMaxSymlinks = 40;  // as the kernel's ELOOP limit

std::vector<std::string> components(const std::string &path) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < path.size()) {
        while (i < path.size() && path[i] == '/') ++i;
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        if (j > i) out.push_back(path.substr(i, j - i));
        i = j;
    }
    return out;
}

std::string parent_of(const std::string &p) {
    auto slash = p.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
}

unsigned file_mode(mode_t m) { return (m & 0111) ? 0755 : 0644; }

std::string read_link(const std::string &path) {
    std::vector<char> buf(4096);
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0 || static_cast<size_t>(n) >= buf.size())
        throw Error(MP_ERROR, "cannot read the symlink " + path + ": " + std::strerror(errno));
    return std::string(buf.data(), static_cast<size_t>(n));
}

}  // namespace

std::string normalize_path(const std::string &path) {
    std::vector<std::string> out;
    for (const auto &c : components(path)) {
        if (c == ".") continue;
        if (c == "..") {
            if (!out.empty()) out.pop_back();
            continue;
        }
        out.push_back(c);
    }
    std::string s;
    for (const auto &c : out) s += "/" + c;
    return s.empty() ? "/" : s;
}

Rootfs Rootfs::extract(const std::function<bool(const std::string &)> &pred) {
    Rootfs out;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (pred(it->first)) {
            out.entries_.emplace(it->first, std::move(it->second));
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}

void Rootfs::merge(Rootfs &&other) {
    for (auto &kv : other.entries_) entries_.emplace(kv.first, std::move(kv.second));
    for (auto &w : other.warnings_) warnings_.push_back(std::move(w));
    for (auto &l : other.dir_links_) dir_links_.push_back(std::move(l));
    other.entries_.clear();
    other.warnings_.clear();
    other.dir_links_.clear();
}

void Rootfs::put(const std::string &path, RootfsEntry e) {
    auto it = entries_.find(path);
    if (it != entries_.end()) {
        if (it->second.type == RootfsEntry::Directory && e.type == RootfsEntry::Directory) {
            it->second.mode |= e.mode & 07000;  // keep a sticky bit set by add_directory
            return;
        }
        if (it->second.type != e.type)
            throw Error(MP_EINVAL, "the image would need " + path + " to be both a " +
                                       (it->second.type == RootfsEntry::Directory ? "directory" : "file or link") +
                                       " and a " + (e.type == RootfsEntry::Directory ? "directory" : "file or link") +
                                       "; check \"files\" and \"include\" for overlapping destinations");
    }
    entries_[path] = std::move(e);
}

void Rootfs::add_directory(const std::string &path, unsigned mode) {
    RootfsEntry e;
    e.type = RootfsEntry::Directory;
    e.mode = mode;
    put(normalize_path(path), e);
}

void Rootfs::add_content(const std::string &path, const std::string &content, unsigned mode) {
    RootfsEntry e;
    e.type = RootfsEntry::File;
    e.mode = mode;
    e.content = content;
    e.size = content.size();
    put(normalize_path(path), e);
}

void Rootfs::add_file(const std::string &image_path, const std::string &host_path, const struct ::stat &st,
                      bool explicit_path) {
    RootfsEntry e;
    e.type = RootfsEntry::File;
    e.mode = file_mode(st.st_mode);
    e.host_path = host_path;
    e.size = static_cast<uint64_t>(st.st_size);
    e.identity = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_ctim.tv_sec) +
                 "." + std::to_string(st.st_ctim.tv_nsec) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                 std::to_string(st.st_mtim.tv_nsec);
    put(image_path, e);
    if (hook_) hook_(image_path, host_path, explicit_path);
}

void Rootfs::add_same_path(const std::string &path, const std::string &what) {
    add_walk(normalize_path(path), what, 0, true);
}

void Rootfs::add_walk(const std::string &path, const std::string &what, int depth, bool explicit_path) {
    if (depth > kMaxSymlinks) throw Error(MP_EINVAL, what + " " + path + ": too many levels of symbolic links");
    auto comps = components(path);
    std::string cur;
    for (size_t i = 0; i < comps.size(); ++i) {
        std::string next = cur + "/" + comps[i];
        struct stat st;
        if (::lstat(next.c_str(), &st) != 0)
            throw Error(MP_EINVAL, what + " " + path + " cannot be added to the image: " + next + ": " + std::strerror(errno));
        bool last = i + 1 == comps.size();
        if (S_ISLNK(st.st_mode)) {
            std::string target = read_link(next);
            RootfsEntry e;
            e.type = RootfsEntry::Symlink;
            e.link = target;
            put(next, e);
            std::string resolved = target[0] == '/' ? target : parent_of(next) + "/" + target;
            for (size_t k = i + 1; k < comps.size(); ++k) resolved += "/" + comps[k];
            add_walk(normalize_path(resolved), what, depth + 1, explicit_path);
            return;
        }
        if (S_ISDIR(st.st_mode)) {
            if (last) {
                add_tree(next, next, true, depth);
            } else {
                add_directory(next, 0755);
            }
        } else if (S_ISREG(st.st_mode)) {
            if (!last) throw Error(MP_EINVAL, what + " " + path + ": " + next + " is a file, not a directory");
            add_file(next, next, st, explicit_path);
        } else {
            warnings_.push_back(next + " is not a regular file, directory or symlink; left out of the image");
        }
        cur = next;
    }
}

void Rootfs::add_tree(const std::string &host_dir, const std::string &image_dir, bool same_path, int depth) {
    add_directory(image_dir, 0755);
    DIR *d = ::opendir(host_dir.c_str());
    if (!d) throw Error(MP_EINVAL, "cannot list " + host_dir + " for the image: " + std::strerror(errno));
    std::vector<std::string> names;
    while (struct dirent *de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto &n : names) {
        std::string h = host_dir + "/" + n, img = image_dir + "/" + n;
        struct stat st;
        if (::lstat(h.c_str(), &st) != 0) continue;  // vanished while listing
        if (S_ISDIR(st.st_mode)) {
            add_tree(h, img, same_path, depth);
        } else if (S_ISREG(st.st_mode)) {
            add_file(img, h, st, false);
        } else if (S_ISLNK(st.st_mode)) {
            std::string target = read_link(h);
            RootfsEntry e;
            e.type = RootfsEntry::Symlink;
            e.link = target;
            put(img, e);
            if (!same_path) continue;
            // A link to a file outside the tree (a venv's bin/python ->
            // /usr/bin/python3.11) must bring its target, or it dangles.
            std::string resolved = normalize_path(target[0] == '/' ? target : host_dir + "/" + target);
            struct stat ts;
            if (::stat(resolved.c_str(), &ts) != 0) {
                warnings_.push_back(h + " is a dangling symlink (to " + target + ")");
            } else if (S_ISREG(ts.st_mode)) {
                add_walk(resolved, "the target of " + h, depth + 1, false);
            } else if (S_ISDIR(ts.st_mode)) {
                // Whether it is copied after all (another "include" path, or
                // the package's own linked install that a binding includes)
                // is known only once every path was added: see dir_links().
                if (resolved.rfind(host_dir, 0) != 0) dir_links_.push_back({h, resolved});
            }
        } else {
            warnings_.push_back(h + " is not a regular file, directory or symlink; left out of the image");
        }
    }
}

void Rootfs::add_copy(const std::string &src, const std::string &dest, const std::string &what) {
    struct stat st;
    if (::stat(src.c_str(), &st) != 0)
        throw Error(MP_EINVAL, what + " \"" + src + "\" cannot be copied into the image: " + std::strerror(errno));
    std::string d = normalize_path(dest);
    if (S_ISDIR(st.st_mode)) {
        add_tree(src, d, false, 0);
    } else if (S_ISREG(st.st_mode)) {
        add_file(d, src, st, true);
    } else {
        throw Error(MP_EINVAL, what + " \"" + src + "\" is not a regular file or directory");
    }
}

std::string Rootfs::fingerprint(const std::function<bool(const std::string &)> &skip) const {
    Sha256 h;
    auto field = [&](const std::string &s) {
        std::string len = std::to_string(s.size()) + ":";
        h.update(len.data(), len.size());
        h.update(s.data(), s.size());
    };
    for (const auto &kv : entries_) {
        if (skip && skip(kv.first)) continue;
        const RootfsEntry &e = kv.second;
        field(kv.first);
        field(std::to_string(static_cast<int>(e.type)) + "/" + std::to_string(e.mode) + "/" + std::to_string(e.size));
        field(e.link);
        field(e.host_path);
        field(e.identity);
        field(e.content);
    }
    return h.digest();
}

void Rootfs::write_tar(const std::function<void(const char *, size_t)> &sink, int64_t mtime,
                       const std::function<bool(const std::string &)> &skip) const {
    // Every written path plus its ancestors, sorted: a parent ("/a") sorts
    // before its children ("/a/..."), so extraction never meets a missing dir.
    std::set<std::string> paths;
    for (const auto &kv : entries_) {
        if (skip && skip(kv.first)) continue;
        paths.insert(kv.first);
        for (std::string p = parent_of(kv.first); p != "/"; p = parent_of(p)) {
            auto anc = entries_.find(p);
            if (anc != entries_.end() && anc->second.type != RootfsEntry::Directory)
                throw Error(MP_EINVAL, "the image would need " + p + " to be a directory (for " + kv.first +
                                           "), but it is a file or symlink there; choose another \"dest\"");
            if (!paths.insert(p).second) break;
        }
    }
    TarWriter tar(sink, mtime);
    for (const auto &p : paths) {
        auto it = entries_.find(p);
        if (it == entries_.end()) {
            tar.add_directory(p, 0755);
            continue;
        }
        const RootfsEntry &e = it->second;
        switch (e.type) {
        case RootfsEntry::Directory: tar.add_directory(p, e.mode); break;
        case RootfsEntry::Symlink: tar.add_symlink(p, e.link); break;
        case RootfsEntry::File:
            if (e.host_path.empty()) tar.add_file(p, e.mode, e.content);
            else tar.add_host_file(p, e.mode, e.host_path, e.size);
            break;
        }
    }
    tar.finish();
}

}  // namespace mp::package
