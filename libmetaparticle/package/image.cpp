#include "package/image.h"

#include <dirent.h>
#include <elf.h>
#include <unistd.h>
#include <utime.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstring>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <ctime>
#include <list>
#include <mutex>
#include <map>
#include <set>

#include "common/error.h"
#include "json/json.h"
#include "package/base_image.h"
#include "package/digest.h"
#include "package/elf.h"
#include "package/gzip.h"
#include "package/rootfs.h"

namespace mp::package {
namespace {

// Deterministic, minimal user database: root and nobody are what programs
// look up (getpwuid(0), "nobody" for privilege drops).
const char kPasswd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const char kGroup[] =
    "root:x:0:\n"
    "nogroup:x:65534:\n";
// glibc >= 2.34 has the "files" and "dns" services built into libc.so.6, so
// this works without any libnss_* module in the image.
const char kNsswitch[] =
    "passwd: files\n"
    "group: files\n"
    "shadow: files\n"
    "hosts: files dns\n"
    "networks: files\n"
    "protocols: files\n"
    "services: files\n";

// CA bundles of the common distributions: the first that exists is copied,
// so HTTPS clients in the image verify servers as they do on the host.
const char *const kCaBundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",  // Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",    // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",              // openSUSE
};

const char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string rfc3339(int64_t t) {
    time_t tt = static_cast<time_t>(t);
    struct tm tm;
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string host_architecture() {
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#elif defined(__i386__)
    return "386";
#elif defined(__arm__)
    return "arm";
#elif defined(__powerpc64__)
    return "ppc64le";
#elif defined(__s390x__)
    return "s390x";
#elif defined(__riscv)
    return "riscv64";
#else
    return "unknown";
#endif
}

// Recently built layers, by fingerprint of their inputs: rebuilding an
// unchanged runtime layer (the big one: libraries) costs a stat per file
// instead of reading and compressing megabytes. Process-wide, small.
std::mutex g_cache_mu;
std::list<std::pair<std::string, Layer>> g_cache;  // most recent first
constexpr size_t kCacheEntries = 4;

Layer build_layer(const Rootfs &fs, const std::string &description, int64_t mtime, const BuildSettings &s,
                  const std::function<bool(const std::string &)> &skip);

constexpr size_t kDiskCacheEntries = 16;

bool mkdirs(const std::string &path) {
    std::string cur;
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i == path.size() || path[i] == '/') {
            cur = path.substr(0, i);
            if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) return false;
        }
    }
    return true;
}

// A cached layer: <key>.tar.gz (the blob) + <key>.json (its metadata). A
// damaged or foreign entry is ignored (rebuilt), never trusted.
std::optional<Layer> disk_cache_get(const std::string &dir, const std::string &key) {
    std::ifstream meta(dir + "/" + key + ".json");
    if (!meta) return std::nullopt;
    std::stringstream ms;
    ms << meta.rdbuf();
    auto j = json::parse(ms.str());
    if (!j) return std::nullopt;
    Layer l;
    l.blob.media_type = media::kLayerGzip;
    l.blob.digest = json::get_string(j.get(), "digest").value_or("");
    l.diff_id = json::get_string(j.get(), "diffID").value_or("");
    l.description = json::get_string(j.get(), "description").value_or("");
    l.uncompressed_size = static_cast<uint64_t>(json::get_int(j.get(), "uncompressedSize").value_or(0));
    l.files = static_cast<size_t>(json::get_int(j.get(), "files").value_or(0));
    std::ifstream blob(dir + "/" + key + ".tar.gz", std::ios::binary);
    if (!blob) return std::nullopt;
    std::stringstream bs;
    bs << blob.rdbuf();
    l.blob.data = bs.str();
    if (l.diff_id.empty() || sha256_digest(l.blob.data) != l.blob.digest) return std::nullopt;
    ::utime((dir + "/" + key + ".json").c_str(), nullptr);  // recently used: pruned last
    return l;
}

void disk_cache_put(const std::string &dir, const std::string &key, const Layer &l) {
    if (!mkdirs(dir)) return;  // a cache is an optimisation: never fail the build for it
    std::string tmp = dir + "/." + key + "." + std::to_string(::getpid());
    {
        std::ofstream out(tmp + ".gz", std::ios::binary);
        out.write(l.blob.data.data(), static_cast<std::streamsize>(l.blob.data.size()));
        if (!out) {
            ::unlink((tmp + ".gz").c_str());
            return;
        }
    }
    auto j = json::object();
    json::set_string(j.get(), "digest", l.blob.digest);
    json::set_string(j.get(), "diffID", l.diff_id);
    json::set_string(j.get(), "description", l.description);
    json::set_int(j.get(), "uncompressedSize", static_cast<int64_t>(l.uncompressed_size));
    json::set_int(j.get(), "files", static_cast<int64_t>(l.files));
    {
        std::ofstream out(tmp + ".json");
        out << json::print(j.get());
    }
    // Blob first, metadata last: a reader never sees metadata without its blob.
    ::rename((tmp + ".gz").c_str(), (dir + "/" + key + ".tar.gz").c_str());
    ::rename((tmp + ".json").c_str(), (dir + "/" + key + ".json").c_str());

    // Prune: keep the most recently used entries.
    std::vector<std::pair<time_t, std::string>> entries;
    if (DIR *d = ::opendir(dir.c_str())) {
        while (struct dirent *e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0 && n[0] != '.') {
                struct stat st;
                if (::stat((dir + "/" + n).c_str(), &st) == 0) entries.push_back({st.st_mtime, n.substr(0, n.size() - 5)});
            }
        }
        ::closedir(d);
    }
    if (entries.size() <= kDiskCacheEntries) return;
    std::sort(entries.begin(), entries.end());
    for (size_t i = 0; i + kDiskCacheEntries < entries.size(); ++i) {
        ::unlink((dir + "/" + entries[i].second + ".json").c_str());
        ::unlink((dir + "/" + entries[i].second + ".tar.gz").c_str());
    }
}

// Directories whose contents come from the system's packages (or another
// installer), not from the app being developed.
bool in_system_directory(const std::string &path) {
    static const char *const kSystemDirs[] = {"/usr/", "/lib/", "/lib64/", "/lib32/", "/libx32/", "/bin/",
                                              "/sbin/", "/opt/", "/etc/", "/nix/store/", "/snap/"};
    const std::string p = normalize_path(path);
    for (const char *dir : kSystemDirs)
        if (p.rfind(dir, 0) == 0) return true;
    return false;
}

// A file of a package the app depends on, installed by npm or pip: under a
// node_modules, site-packages or dist-packages directory.
bool is_dependency_path(const std::string &path) {
    for (const char *dir : {"/node_modules", "/site-packages", "/dist-packages"}) {
        for (size_t at = path.find(dir); at != std::string::npos; at = path.find(dir, at + 1)) {
            size_t end = at + std::strlen(dir);
            if (end == path.size() || path[end] == '/') return true;
        }
    }
    return false;
}

bool exists_path(const std::string &p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

bool has_python_stdlib(const std::string &prefix) {
    // <prefix>/lib/pythonX.Y/os.py
    DIR *d = ::opendir((prefix + "/lib").c_str());
    if (!d) return false;
    bool found = false;
    while (struct dirent *e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.rfind("python", 0) == 0 && exists_path(prefix + "/lib/" + n + "/os.py")) found = true;
    }
    ::closedir(d);
    return found;
}

// The installation an interpreter command belongs to, wherever it was
// installed (pyenv, conda, /usr/local, nvm, a dotnet outside /usr): its
// prefix holds the runtime (standard library, framework), which changes with
// the runtime, not with the app. "" when the command is no such interpreter
// (a native program is the app itself).
std::string runtime_root(const std::string &command) {
    char *real = ::realpath(command.c_str(), nullptr);
    if (!real) return "";
    std::string exe = real;
    std::free(real);
    std::string dir = exe.substr(0, exe.rfind('/'));
    // .NET: the dotnet host sits at the top of its installation.
    if (exists_path(dir + "/shared/Microsoft.NETCore.App")) return dir;
    if (dir.size() < 4 || dir.compare(dir.size() - 4, 4, "/bin") != 0) return "";
    std::string prefix = dir.substr(0, dir.size() - 4);
    if (prefix.empty()) return "";
    if (exists_path(prefix + "/conda-meta") || has_python_stdlib(prefix)) return prefix;   // Python, conda
    if (exists_path(prefix + "/include/node/node.h") || exists_path(prefix + "/lib/node_modules/npm"))
        return prefix;  // Node (nvm, /usr/local, a tarball)
    return "";
}

bool under(const std::string &path, const std::string &dir) {
    return !dir.empty() && path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

Layer make_layer(const Rootfs &fs, const std::string &description, int64_t mtime, const BuildSettings &s,
                 const std::function<bool(const std::string &)> &skip) {
    if (!s.use_cache) return build_layer(fs, description, mtime, s, skip);
    // v2: bump when the layer format (tar/gzip bytes) changes (v2: libdeflate).
    std::string key = digest_hex(sha256_digest("v2|" + fs.fingerprint(skip) + "|" + description + "|" +
                                               std::to_string(mtime) + "|" + std::to_string(s.gzip_level) + "|" +
                                               (s.keep_uncompressed ? "u" : "c")));
    {
        std::lock_guard<std::mutex> lk(g_cache_mu);
        for (auto it = g_cache.begin(); it != g_cache.end(); ++it) {
            if (it->first == key) {
                g_cache.splice(g_cache.begin(), g_cache, it);
                Layer hit = it->second;
                // persist it for the next runs too (built before a cache dir was set)
                struct stat st;
                if (!s.cache_dir.empty() && !s.keep_uncompressed &&
                    ::stat((s.cache_dir + "/" + key + ".json").c_str(), &st) != 0)
                    disk_cache_put(s.cache_dir, key, hit);
                return hit;
            }
        }
    }
    std::optional<Layer> cached;
    if (!s.cache_dir.empty() && !s.keep_uncompressed) cached = disk_cache_get(s.cache_dir, key);
    Layer layer;
    if (cached) {
        layer = std::move(*cached);
    } else {
        layer = build_layer(fs, description, mtime, s, skip);
        if (!s.cache_dir.empty() && !s.keep_uncompressed) disk_cache_put(s.cache_dir, key, layer);
    }
    std::lock_guard<std::mutex> lk(g_cache_mu);
    g_cache.emplace_front(key, layer);
    if (g_cache.size() > kCacheEntries) g_cache.pop_back();
    return layer;
}

Layer build_layer(const Rootfs &fs, const std::string &description, int64_t mtime, const BuildSettings &s,
                  const std::function<bool(const std::string &)> &skip) {
    Layer layer;
    layer.description = description;
    Sha256 uncompressed_hash, compressed_hash;
    // Progress by bytes of tar written against the files' total size (the
    // tar headers make the end overshoot a little: clamped).
    uint64_t expected = 0, next_report = 0;
    if (s.progress) {
        for (const auto &kv : fs.entries())
            if (kv.second.type == RootfsEntry::File && !(skip && skip(kv.first)))
                expected += kv.second.host_path.empty() ? kv.second.content.size() : kv.second.size;
        s.progress("building layer " + description, 0, expected + 1);
    }
    std::string &gz = layer.blob.data;
    GzipWriter gzip(
        [&](const char *d, size_t n) {
            compressed_hash.update(d, n);
            gz.append(d, n);
        },
        s.gzip_level);
    fs.write_tar(
        [&](const char *d, size_t n) {
            uncompressed_hash.update(d, n);
            layer.uncompressed_size += n;
            if (s.progress && layer.uncompressed_size >= next_report) {
                next_report = layer.uncompressed_size + 256 * 1024;
                s.progress("building layer " + description, std::min(layer.uncompressed_size, expected), expected + 1);
            }
            if (s.keep_uncompressed) layer.uncompressed.append(d, n);
            gzip.write(d, n);
        },
        mtime, skip);
    gzip.finish();
    if (s.progress) s.progress("building layer " + description, expected + 1, expected + 1);
    layer.blob.media_type = media::kLayerGzip;
    layer.blob.digest = compressed_hash.digest();
    layer.diff_id = uncompressed_hash.digest();
    for (const auto &kv : fs.entries())
        if (kv.second.type == RootfsEntry::File && !(skip && skip(kv.first))) ++layer.files;
    return layer;
}

json::Ptr string_array(const std::vector<std::string> &v) {
    auto a = json::array();
    for (const auto &s : v) cJSON_AddItemToArray(a.get(), cJSON_CreateString(s.c_str()));
    return a;
}

std::string human(uint64_t bytes) {
    char buf[32];
    if (bytes >= 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
    else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
    else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
}

}  // namespace

uint64_t Image::total_compressed() const {
    uint64_t n = config.data.size() + manifest.data.size();
    for (const auto &l : layers) n += l.compressed_size();
    return n;
}

void clear_layer_memory_cache() {
    std::lock_guard<std::mutex> lk(g_cache_mu);
    g_cache.clear();
}

std::string default_layer_cache_dir() {
    if (const char *d = std::getenv("METAPARTICLE_CACHE_DIR"); d && *d) return d;
    if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/metaparticle/layers";
    if (const char *h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/metaparticle/layers";
    return "";
}

int64_t source_date_epoch() {
    const char *s = std::getenv("SOURCE_DATE_EPOCH");
    if (!s || !*s) return 0;
    char *end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 253402300799LL) return 0;  // invalid: ignore, as reproducible-builds.org advises
    return v;
}

std::string oci_architecture(int m) {
    switch (m) {
    case EM_X86_64: return "amd64";
    case EM_AARCH64: return "arm64";
    case EM_386: return "386";
    case EM_ARM: return "arm";
    case EM_PPC64: return "ppc64le";
    case EM_S390: return "s390x";
    case EM_RISCV: return "riscv64";
    default: return "";
    }
}

Image build_image(const Options &o, const BuildSettings &s) {
    auto log = [&](const std::string &m) {
        if (s.log) s.log(m);
    };
    Image img;
    img.reference = o.image_reference();
    // The base image supplies what is below our layers. Its manifest and
    // config are read now (a tag is resolved to a digest, so the same base
    // digest and inputs give the same image); its layers are not downloaded.
    std::optional<BaseImage> base;
    json::Ptr base_cfg;
    if (!o.base_image.empty()) {
        base = resolve_base_image(o.base_image, host_architecture(), s.log);
        base_cfg = json::parse(base->config);
        img.base_reference = o.base_image;
        img.base_manifest_digest = base->manifest_digest;
        log("base image " + o.base_image + ": " + std::to_string(base->layers.size()) + " layers, manifest " +
            base->manifest_digest);
    }
    const int64_t mtime = source_date_epoch();

    // --- above the runtime layer: the command, included paths, copied files,
    // in two layers by how often they change. Paths in system directories
    // (an interpreter, its standard library, the .NET runtime) change with
    // package upgrades; the app's own files change with every edit. Kept
    // apart, an edit recompresses and uploads only the app's layer.
    Rootfs system_files, app;
    std::vector<std::pair<std::string, bool>> elf_candidates;  // path, explicit
    auto elf_hook = [&](const std::string &image_path, const std::string &host_path, bool explicit_path) {
        // Only same-path files can be resolved like the loader will see them.
        if (image_path == host_path && is_elf_file(host_path)) elf_candidates.push_back({host_path, explicit_path});
    };
    system_files.set_file_hook(elf_hook);
    app.set_file_hook(elf_hook);
    // An interpreter's installation outside the system directories (pyenv,
    // conda, nvm, /usr/local...) is runtime too; but what pip or npm put in
    // it (site-packages, node_modules) goes with the app's dependencies.
    const std::string interpreter_root = in_system_directory(o.command[0]) ? "" : runtime_root(o.command[0]);
    Rootfs interpreter_deps;  // pip/npm packages inside that installation
    interpreter_deps.set_file_hook(elf_hook);
    auto add_same_path = [&](const std::string &path, const std::string &what) {
        const std::string p = normalize_path(path);
        if (in_system_directory(p) || p == interpreter_root)
            system_files.add_same_path(path, what);
        else if (under(p, interpreter_root))
            (is_dependency_path(p) ? interpreter_deps : system_files).add_same_path(path, what);
        else
            app.add_same_path(path, what);
    };
    struct stat st;
    if (::stat(o.command[0].c_str(), &st) == 0) {
        add_same_path(o.command[0], "the command");
    } else {
        throw Error(MP_EINVAL, "containerize: the command " + o.command[0] +
                                   " does not exist on this machine, so it cannot be put in the image; check \"command\"");
    }
    for (const auto &inc : o.include) add_same_path(inc, "\"include\" path");
    for (size_t i = 0; i < o.files.size(); ++i)
        app.add_copy(o.files[i].src, o.files[i].dest, "\"files[" + std::to_string(i) + "].src\"");
    if (o.working_dir != "/") app.add_directory(o.working_dir, 0755);

    // --- the shared-library closure of every ELF file in the app layer.
    LibraryClosure closure(s.ld_so_cache);
    int architecture_machine = 0;
    for (const auto &c : elf_candidates) {
        closure.add(c.first, c.second);
        if (!architecture_machine) {
            try {
                if (auto info = read_elf(c.first)) architecture_machine = info->machine;
            } catch (const Error &) {
            }
        }
    }

    // --- runtime layer.
    Rootfs runtime;
    runtime.add_directory("/etc", 0755);
    runtime.add_content("/etc/passwd", kPasswd, 0644);
    runtime.add_content("/etc/group", kGroup, 0644);
    runtime.add_content("/etc/nsswitch.conf", kNsswitch, 0644);
    runtime.add_directory("/tmp", 01777);
    runtime.add_directory("/root", 0700);
    for (const char *ca : kCaBundles) {
        if (::stat(ca, &st) == 0 && S_ISREG(st.st_mode)) {
            runtime.add_same_path(ca, "CA bundle");
            break;
        }
    }
    for (const auto &lib : closure.files())
        if (!app.contains(lib) && !system_files.contains(lib) && !interpreter_deps.contains(lib))
            runtime.add_same_path(lib, "shared library");

    img.warnings = closure.warnings();
    for (const auto &w : system_files.warnings()) img.warnings.push_back(w);
    for (const auto &w : app.warnings()) img.warnings.push_back(w);
    for (const auto &w : interpreter_deps.warnings()) img.warnings.push_back(w);
    for (const auto &w : runtime.warnings()) img.warnings.push_back(w);
    for (const Rootfs *fs : {&system_files, &app, &interpreter_deps}) {
        for (const auto &link : fs->dir_links()) {
            if (system_files.covers(link.second) || app.covers(link.second) || interpreter_deps.covers(link.second))
                continue;  // copied after all
            img.warnings.push_back(link.first + " links to the directory " + link.second +
                                   ", which is not copied; add it to \"include\" if the program needs it");
        }
    }

    // Base layers first, ours on top. The runtime layer is still added: the
    // program's library closure comes from this host, not from the base.
    if (base) img.layers = base->layers;
    img.layers.push_back(make_layer(runtime, "runtime", mtime, s, {}));
    // A layer leaves out what a layer below already has (a directory both
    // need, a library that was also included). Empty layers are left out.
    std::vector<const Rootfs *> below = {&runtime};
    auto provided_below = [&](const Rootfs &fs) {
        return [&below, &fs](const std::string &p) {
            auto mine = fs.entries().find(p);
            for (const Rootfs *lower : below) {
                auto it = lower->entries().find(p);
                if (it != lower->entries().end() && mine != fs.entries().end() && mine->second.type == it->second.type)
                    return true;
            }
            return false;
        };
    };
    // The app's dependencies (node_modules, site-packages) change less often
    // than its own code: a layer of their own, below the app's.
    Rootfs dependencies = app.extract(is_dependency_path);
    // A directory of the interpreter's installation that was included whole
    // (a stdlib with site-packages inside) brings its dependencies along.
    if (!interpreter_root.empty())
        dependencies.merge(system_files.extract([&](const std::string &p) {
            return under(p, interpreter_root) && is_dependency_path(p);
        }));
    dependencies.merge(std::move(interpreter_deps));
    for (auto [fs, description] : {std::pair<const Rootfs *, const char *>{&system_files, "system"},
                                   {&dependencies, "dependencies"},
                                   {&app, "app"}}) {
        if (fs->entries().empty()) continue;
        img.layers.push_back(make_layer(*fs, description, mtime, s, provided_below(*fs)));
        below.push_back(fs);
    }

    // --- config.
    // Environment: the base's, then ours (ours win), then "env" (wins).
    const cJSON *base_c = base_cfg ? json::get_object(base_cfg.get(), "config") : nullptr;
    std::map<std::string, std::string> env;
    const cJSON *e;
    cJSON_ArrayForEach(e, json::get_array(base_c, "Env")) {
        if (!cJSON_IsString(e)) continue;
        std::string kv = e->valuestring;
        auto eq = kv.find('=');
        if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    if (!env.count("PATH")) env["PATH"] = kDefaultPath;
    auto extra = closure.extra_library_dirs();
    if (!extra.empty()) {
        std::string v;
        for (const auto &d : extra) v += (v.empty() ? "" : ":") + d;
        // Our libraries first; the base's own programs keep finding theirs.
        if (auto it = env.find("LD_LIBRARY_PATH"); it != env.end() && !it->second.empty()) v += ":" + it->second;
        env["LD_LIBRARY_PATH"] = v;
    }
    for (const auto &kv : o.env) env[kv.first] = kv.second;
    env["METAPARTICLE_IN_CONTAINER"] = "true";
    std::vector<std::string> env_list;
    for (const auto &kv : env) env_list.push_back(kv.first + "=" + kv.second);

    std::string created = rfc3339(mtime);
    auto cfg = json::object();
    json::set_string(cfg.get(), "created", created);
    std::string arch = oci_architecture(architecture_machine);
    if (arch.empty()) arch = host_architecture();
    json::set_string(cfg.get(), "architecture", arch);
    if (base_cfg) {
        std::string base_arch = json::get_string(base_cfg.get(), "architecture").value_or("");
        if (!base_arch.empty() && base_arch != arch)
            img.warnings.push_back("the base image " + o.base_image + " is for " + base_arch + ", the program for " + arch +
                                   "; its programs may not run");
    }
    json::set_string(cfg.get(), "os", "linux");
    cJSON *c = json::ensure_object(cfg.get(), "config");
    json::set(c, "Env", string_array(env_list));
    json::set(c, "Entrypoint", string_array(o.command));
    // The base's WorkingDir and User are kept unless "workingDir" is given
    // (we have no option for the user).
    std::string base_wd = json::get_string(base_c, "WorkingDir").value_or("");
    json::set_string(c, "WorkingDir", !o.working_dir_set && !base_wd.empty() ? base_wd : o.working_dir);
    if (auto user = json::get_string(base_c, "User"); user && !user->empty()) json::set_string(c, "User", *user);
    if (!o.ports.empty()) {
        cJSON *ports = json::ensure_object(c, "ExposedPorts");
        std::vector<int> sorted = o.ports;
        std::sort(sorted.begin(), sorted.end());
        for (int p : sorted) json::set(ports, (std::to_string(p) + "/tcp").c_str(), json::object());
    }
    cJSON *labels = json::ensure_object(c, "Labels");
    const cJSON *bl;
    cJSON_ArrayForEach(bl, json::get_object(base_c, "Labels")) {
        if (cJSON_IsString(bl) && bl->string) json::set_string(labels, bl->string, bl->valuestring);
    }
    json::set_string(labels, "io.metaparticle.name", o.name);
    cJSON *rootfs = json::ensure_object(cfg.get(), "rootfs");
    json::set_string(rootfs, "type", "layers");
    std::vector<std::string> diff_ids;
    for (const auto &l : img.layers) diff_ids.push_back(l.diff_id);
    json::set(rootfs, "diff_ids", string_array(diff_ids));
    auto history = json::array();
    size_t first_own = 0;
    if (base) {
        first_own = base->layers.size();
        // The base's history when it matches its layers (one entry per
        // layer, not counting empty_layer ones), else one entry per layer.
        const cJSON *bh = json::get_array(base_cfg.get(), "history");
        size_t non_empty = 0;
        const cJSON *h;
        cJSON_ArrayForEach(h, bh) non_empty += !json::get_bool(h, "empty_layer").value_or(false);
        if (bh && non_empty == base->layers.size()) {
            cJSON_ArrayForEach(h, bh) cJSON_AddItemToArray(history.get(), cJSON_Duplicate(h, 1));
        } else {
            for (size_t i = 0; i < base->layers.size(); ++i) {
                auto hh = json::object();
                json::set_string(hh.get(), "created_by", "base image " + o.base_image);
                cJSON_AddItemToArray(history.get(), hh.release());
            }
        }
    }
    for (size_t i = first_own; i < img.layers.size(); ++i) {
        const auto &l = img.layers[i];
        auto h = json::object();
        json::set_string(h.get(), "created", created);
        json::set_string(h.get(), "created_by", "metaparticle containerize: " + l.description + " layer");
        cJSON_AddItemToArray(history.get(), h.release());
    }
    json::set(cfg.get(), "history", std::move(history));
    img.config.media_type = media::kConfig;
    img.config.data = json::print(cfg.get());
    img.config.digest = sha256_digest(img.config.data);

    // --- manifest.
    auto man = json::object();
    json::set_int(man.get(), "schemaVersion", 2);
    json::set_string(man.get(), "mediaType", media::kManifest);
    auto descriptor = [](const Blob &b, uint64_t size) {
        auto d = json::object();
        json::set_string(d.get(), "mediaType", b.media_type);
        json::set_string(d.get(), "digest", b.digest);
        json::set_int(d.get(), "size", static_cast<int64_t>(size));
        return d;
    };
    json::set(man.get(), "config", descriptor(img.config, img.config.data.size()));
    auto layers = json::array();
    for (const auto &l : img.layers)
        cJSON_AddItemToArray(layers.get(), descriptor(l.blob, l.compressed_size()).release());
    json::set(man.get(), "layers", std::move(layers));
    if (base) {
        // The OCI pre-defined annotations naming the base image.
        cJSON *ann = json::ensure_object(man.get(), "annotations");
        json::set_string(ann, "org.opencontainers.image.base.digest", base->manifest_digest);
        json::set_string(ann, "org.opencontainers.image.base.name", o.base_image);
    }
    img.manifest.media_type = media::kManifest;
    img.manifest.data = json::print(man.get());
    img.manifest.digest = sha256_digest(img.manifest.data);

    for (const auto &l : img.layers)
        if (!l.from_base) log("layer " + l.description + ": " + std::to_string(l.files) + " files, " + human(l.uncompressed_size) +
            " -> " + human(l.blob.data.size()) + " gzip, " + l.blob.digest);
    log("image " + img.reference + ": " + human(img.total_compressed()) + ", manifest " + img.manifest.digest);
    return img;
}

}  // namespace mp::package
