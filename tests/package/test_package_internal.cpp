// Internal tests of the image builder: ELF closure, ld.so.cache, tar and
// gzip bytes, reproducibility, reference parsing, credentials lookup.

#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "package/credentials.h"
#include "package/elf.h"
#include "package/gzip.h"
#include "package/image.h"
#include "package/options.h"
#include "package/registry.h"
#include "package/rootfs.h"
#include "package/tar.h"
#include "proc.h"

// cmocka last: its fail() macro would break standard headers.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

using namespace mp::package;

namespace {

std::string example_bin() {
    const char *e = std::getenv("MP_EXAMPLE_BIN");
    return e ? e : "";
}

bool contains_suffix(const std::set<std::string> &s, const std::string &suffix) {
    for (const auto &x : s)
        if (x.size() >= suffix.size() && x.compare(x.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
    return false;
}

// `tar -tv` listing of a (gzip'd) tar held in memory.
std::string tar_listing(const std::string &data, bool gz) {
    std::string dir = mptest::make_temp_dir("mp-tar-");
    std::string f = dir + (gz ? "/l.tar.gz" : "/l.tar");
    mptest::write_file(f, data);
    std::string cmd = std::string("tar --numeric-owner --full-time -tv") + (gz ? "z" : "") + "f " + f + " > " + dir + "/out 2>&1";
    int rc = std::system(cmd.c_str());
    std::string out = mptest::read_file(dir + "/out");
    mptest::remove_tree(dir);
    if (rc != 0) fail_msg("tar failed to read the archive: %s", out.c_str());
    return out;
}

void test_elf_closure_of_real_program(void **) {
    std::string exe = example_bin();
    assert_false(exe.empty());
    auto info = read_elf(exe);
    assert_true(info.has_value());
    assert_true(info->dynamic);
    assert_false(info->interp.empty());
    bool needs_libmp = false;
    for (const auto &n : info->needed) needs_libmp = needs_libmp || n.rfind("libmetaparticle.so", 0) == 0;
    assert_true(needs_libmp);

    LibraryClosure c;
    c.add(exe, true);
    const auto &files = c.files();
    assert_true(files.count(info->interp) == 1);     // the ELF interpreter
    assert_true(contains_suffix(files, "/libc.so.6"));  // libc
    assert_true(contains_suffix(files, "/libcurl.so.4"));  // through libmetaparticle: transitive
    // libmetaparticle comes from the build tree through RUNPATH, not the system
    bool from_runpath = false;
    for (const auto &f : files) from_runpath = from_runpath || f.find("libmetaparticle.so") != std::string::npos;
    assert_true(from_runpath);
    assert_true(c.warnings().empty());
}

void test_elf_rejects_malformed_files(void **) {
    std::string dir = mptest::make_temp_dir("mp-elf-");
    // not an ELF file at all
    mptest::write_file(dir + "/text", "#!/bin/sh\necho hi\n");
    assert_false(read_elf(dir + "/text").has_value());
    assert_false(is_elf_file(dir + "/text"));
    // an ELF cut short: every prefix must fail cleanly, never crash
    std::string whole = mptest::read_file(example_bin());
    for (size_t len : {size_t(20), size_t(64), size_t(200), size_t(1000), whole.size() / 2}) {
        mptest::write_file(dir + "/cut", whole.substr(0, len));
        try {
            auto info = read_elf(dir + "/cut");
            // a prefix may still parse if everything needed is in it
            (void)info;
        } catch (const mp::Error &e) {
            assert_non_null(std::strstr(e.what(), "malformed"));
        }
    }
    // a valid header whose program headers point outside the file
    std::string hdr = whole.substr(0, 64);
    for (int i = 0; i < 8; ++i) hdr[32 + i] = static_cast<char>(i == 4 ? 0x7f : 0);  // e_phoff (ELF64) far away
    mptest::write_file(dir + "/junk", hdr);
    bool threw = false;
    try {
        read_elf(dir + "/junk");
    } catch (const mp::Error &e) {
        threw = std::strstr(e.what(), "outside the file") != nullptr;
    }
    assert_true(threw);
    mptest::remove_tree(dir);
}

void test_ld_so_cache_is_read(void **) {
    struct stat st;
    if (stat("/etc/ld.so.cache", &st) != 0) skip();
    auto cache = read_ld_so_cache();
    auto it = cache.find("libc.so.6");
    assert_true(it != cache.end());
    assert_true(!it->second.empty() && it->second[0][0] == '/');
}

void test_tar_long_names_and_links(void **) {
    std::string out;
    TarWriter tar([&](const char *d, size_t n) { out.append(d, n); });
    std::string deep = "usr/share/" + std::string(120, 'd') + "/" + std::string(90, 'f');  // needs the prefix field
    std::string huge = "opt/" + std::string(300, 'x');                                   // needs a pax record
    tar.add_directory("usr", 0755);
    tar.add_file(deep, 0644, "hello");
    tar.add_file(huge, 0755, "world");
    tar.add_symlink("lib", "usr/lib");
    tar.add_symlink("longlink", "/" + std::string(150, 't'));
    tar.finish();
    assert_int_equal(out.size() % 512, 0);
    std::string listing = tar_listing(out, false);
    assert_non_null(std::strstr(listing.c_str(), deep.c_str()));
    assert_non_null(std::strstr(listing.c_str(), huge.c_str()));
    assert_non_null(std::strstr(listing.c_str(), "lib -> usr/lib"));
    assert_non_null(std::strstr(listing.c_str(), (std::string(150, 't')).c_str()));
    assert_non_null(std::strstr(listing.c_str(), "0/0"));
    assert_non_null(std::strstr(listing.c_str(), "1970-01-01 00:00:00"));
}

Options example_options(const std::string &extra = "") {
    return parse_options("{\"name\": \"example\", \"command\": [\"" + example_bin() + "\"]" + extra + "}");
}

void test_image_is_reproducible(void **) {
    unsetenv("SOURCE_DATE_EPOCH");
    std::string dir = mptest::make_temp_dir("mp-repro-");
    mptest::write_file(dir + "/data.txt", "some application data\n");
    Options o = example_options(", \"include\": [\"" + dir + "\"]");
    BuildSettings fresh;
    fresh.use_cache = false;  // really rebuild: equal digests must come from equal bytes
    Image a = build_image(o, fresh);
    // Touching a file changes its mtime, not the image: mtimes are fixed.
    struct utimbuf t = {1234567, 1234567};
    utime((dir + "/data.txt").c_str(), &t);
    Image b = build_image(o, fresh);
    assert_string_equal(a.manifest.digest.c_str(), b.manifest.digest.c_str());
    assert_string_equal(a.config.digest.c_str(), b.config.digest.c_str());
    assert_int_equal(a.layers.size(), 2);
    for (size_t i = 0; i < a.layers.size(); ++i) {
        assert_string_equal(a.layers[i].blob.digest.c_str(), b.layers[i].blob.digest.c_str());
        assert_true(a.layers[i].blob.data == b.layers[i].blob.data);
    }
    // Changing content changes the app layer, not the runtime layer.
    mptest::write_file(dir + "/data.txt", "other data\n");
    Image c = build_image(o, fresh);
    assert_string_equal(a.layers[0].blob.digest.c_str(), c.layers[0].blob.digest.c_str());
    assert_string_not_equal(a.layers[1].blob.digest.c_str(), c.layers[1].blob.digest.c_str());
    assert_string_not_equal(a.manifest.digest.c_str(), c.manifest.digest.c_str());
    // The in-process layer cache notices the change too.
    Image d = build_image(o);
    assert_string_equal(c.manifest.digest.c_str(), d.manifest.digest.c_str());
    mptest::remove_tree(dir);
}

// Layers by how often their contents change: libraries; files from system
// directories; the app's dependencies (node_modules, site-packages); the
// app's own files. An edit of the app changes only the last layer.
void test_layers_by_how_often_they_change(void **) {
    std::string dir = mptest::make_temp_dir("mp-layers-");
    std::system(("mkdir -p " + dir + "/node_modules/dep " + dir + "/py/site-packages/pkg").c_str());
    mptest::write_file(dir + "/app.js", "console.log('app')\n");
    mptest::write_file(dir + "/node_modules/dep/index.js", "module.exports = 1\n");
    mptest::write_file(dir + "/py/site-packages/pkg/__init__.py", "VALUE = 1\n");
    Options o = example_options(", \"include\": [\"" + dir + "\", \"/etc/debian_version\"]");
    BuildSettings fresh;
    fresh.use_cache = false;
    fresh.keep_uncompressed = true;
    Image a = build_image(o, fresh);
    assert_int_equal(a.layers.size(), 4);
    const char *names[] = {"runtime", "system", "dependencies", "app"};
    for (size_t i = 0; i < 4; ++i) assert_string_equal(a.layers[i].description.c_str(), names[i]);

    std::string system = tar_listing(a.layers[1].uncompressed, false);
    std::string deps = tar_listing(a.layers[2].uncompressed, false);
    std::string app = tar_listing(a.layers[3].uncompressed, false);
    assert_non_null(std::strstr(system.c_str(), "etc/debian_version"));
    assert_non_null(std::strstr(deps.c_str(), "node_modules/dep/index.js"));
    assert_non_null(std::strstr(deps.c_str(), "site-packages/pkg/__init__.py"));
    assert_null(std::strstr(deps.c_str(), "app.js"));
    assert_non_null(std::strstr(app.c_str(), "app.js"));
    assert_non_null(std::strstr(app.c_str(), "package_example_c"));
    assert_null(std::strstr(app.c_str(), "index.js"));
    assert_null(std::strstr(app.c_str(), "__init__.py"));

    // An edit of the app's own code changes only the app layer...
    mptest::write_file(dir + "/app.js", "console.log('edited')\n");
    Image b = build_image(o, fresh);
    for (size_t i = 0; i < 3; ++i)
        assert_string_equal(a.layers[i].blob.digest.c_str(), b.layers[i].blob.digest.c_str());
    assert_string_not_equal(a.layers[3].blob.digest.c_str(), b.layers[3].blob.digest.c_str());
    // ...and an upgraded dependency only the dependencies layer.
    mptest::write_file(dir + "/node_modules/dep/index.js", "module.exports = 2\n");
    Image c = build_image(o, fresh);
    assert_string_not_equal(b.layers[2].blob.digest.c_str(), c.layers[2].blob.digest.c_str());
    assert_string_equal(b.layers[3].blob.digest.c_str(), c.layers[3].blob.digest.c_str());
    mptest::remove_tree(dir);
}

// An interpreter installed outside /usr (pyenv, conda, nvm, /usr/local): its
// installation is detected from the command, so its standard library lands
// in the system layer, what pip put in its site-packages in the dependencies
// layer, and an edit of the app re-uploads only the small app layer.
void test_interpreter_outside_usr_is_runtime(void **) {
    std::string dir = mptest::make_temp_dir("mp-pyenv-");
    const std::string prefix = dir + "/versions/3.99.0", lib = prefix + "/lib/python3.99";
    std::system(("mkdir -p " + prefix + "/bin " + lib + "/json " + lib + "/site-packages/requests " + dir + "/app").c_str());
    std::system(("cp " + example_bin() + " " + prefix + "/bin/python3.99").c_str());  // any ELF will do
    mptest::write_file(lib + "/os.py", "# the standard library\n");
    mptest::write_file(lib + "/json/__init__.py", std::string(64 * 1024, '#') + "\n");
    mptest::write_file(lib + "/site-packages/requests/__init__.py", "VALUE = 1\n");
    mptest::write_file(dir + "/app/app.py", "print('app')\n");
    Options o = parse_options("{\"name\": \"pyenv\", \"command\": [\"" + prefix + "/bin/python3.99\", \"" + dir +
                              "/app/app.py\"], \"include\": [\"" + lib + "\", \"" + dir + "/app\"]}");
    BuildSettings fresh;
    fresh.use_cache = false;
    fresh.keep_uncompressed = true;
    Image a = build_image(o, fresh);
    assert_int_equal(a.layers.size(), 4);
    const char *names[] = {"runtime", "system", "dependencies", "app"};
    for (size_t i = 0; i < 4; ++i) assert_string_equal(a.layers[i].description.c_str(), names[i]);
    std::string system = tar_listing(a.layers[1].uncompressed, false);
    std::string deps = tar_listing(a.layers[2].uncompressed, false);
    std::string app = tar_listing(a.layers[3].uncompressed, false);
    assert_non_null(std::strstr(system.c_str(), "bin/python3.99"));
    assert_non_null(std::strstr(system.c_str(), "python3.99/os.py"));
    assert_non_null(std::strstr(system.c_str(), "python3.99/json/__init__.py"));
    assert_null(std::strstr(system.c_str(), "requests"));
    assert_non_null(std::strstr(deps.c_str(), "site-packages/requests/__init__.py"));
    assert_non_null(std::strstr(app.c_str(), "app/app.py"));
    assert_null(std::strstr(app.c_str(), "os.py"));
    assert_null(std::strstr(app.c_str(), "python3.99/"));

    // The edit-and-rebuild upload: only the app layer changes, and it is small.
    mptest::write_file(dir + "/app/app.py", "print('app')  # edited\n");
    Image b = build_image(o, fresh);
    for (size_t i = 0; i < 3; ++i) assert_string_equal(a.layers[i].blob.digest.c_str(), b.layers[i].blob.digest.c_str());
    assert_string_not_equal(a.layers[3].blob.digest.c_str(), b.layers[3].blob.digest.c_str());
    assert_true(b.layers[3].blob.data.size() < 4096);
    mptest::remove_tree(dir);
}

// The other installations recognised: Node (nvm, /usr/local: include/node),
// conda (conda-meta) and a dotnet outside /usr (shared/Microsoft.NETCore.App
// beside the host). The interpreter and its installation's files go to the
// system layer, a global node_modules to the dependencies layer.
void test_other_interpreter_installations(void **) {
    struct Case {
        const char *exe;                  // relative to the installation
        std::vector<std::string> files;   // relative to the installation
        const char *system_file, *dependency_file;
    };
    const Case cases[] = {
        {"bin/node", {"include/node/node.h", "lib/node_modules/npm/package.json"}, "include/node/node.h",
         "lib/node_modules/npm/package.json"},
        {"bin/python3", {"conda-meta/history", "share/terminfo/x"}, "share/terminfo/x", nullptr},
        {"dotnet", {"shared/Microsoft.NETCore.App/8.0.0/System.Private.CoreLib.dll"},
         "shared/Microsoft.NETCore.App/8.0.0/System.Private.CoreLib.dll", nullptr},
    };
    for (const Case &c : cases) {
        std::string root = mptest::make_temp_dir("mp-interp-") + "/install";
        std::string exe = root + "/" + c.exe;
        std::system(("mkdir -p " + exe.substr(0, exe.rfind('/')) + " && cp " + example_bin() + " " + exe).c_str());
        std::string include;
        for (const auto &f : c.files) {
            std::string p = root + "/" + f;
            std::system(("mkdir -p " + p.substr(0, p.rfind('/'))).c_str());
            mptest::write_file(p, "x\n");
            include += std::string(include.empty() ? "" : ", ") + "\"" + p + "\"";
        }
        Options o = parse_options("{\"name\": \"interp\", \"command\": [\"" + exe + "\"], \"include\": [" + include + "]}");
        BuildSettings fresh;
        fresh.use_cache = false;
        fresh.keep_uncompressed = true;
        Image img = build_image(o, fresh);
        std::map<std::string, std::string> listing;
        for (const auto &l : img.layers) listing[l.description] = tar_listing(l.uncompressed, false);
        assert_true(listing.count("system") == 1);
        assert_false(listing.count("app"));  // nothing of the installation is the app
        assert_non_null(std::strstr(listing["system"].c_str(), c.exe));
        assert_non_null(std::strstr(listing["system"].c_str(), c.system_file));
        if (c.dependency_file) assert_non_null(std::strstr(listing["dependencies"].c_str(), c.dependency_file));
        mptest::remove_tree(root.substr(0, root.rfind('/')));
    }
}

// A symlink to a directory outside the copied tree warns, unless what it
// points to is copied anyway (the Node package's own linked install:
// node_modules/@metaparticle/package -> the package, whose files the binding
// includes).
void test_directory_link_warns_only_when_not_copied(void **) {
    std::string dir = mptest::make_temp_dir("mp-link-");
    std::system(("mkdir -p " + dir + "/app/node_modules/@metaparticle " + dir + "/pkg/lib " + dir + "/other").c_str());
    mptest::write_file(dir + "/app/main.js", "require('@metaparticle/package')\n");
    mptest::write_file(dir + "/pkg/package.json", "{}\n");
    mptest::write_file(dir + "/pkg/lib/index.js", "module.exports = {}\n");
    mptest::write_file(dir + "/other/x.js", "1\n");
    std::system(("ln -s ../../../pkg " + dir + "/app/node_modules/@metaparticle/package").c_str());
    std::system(("ln -s ../../other " + dir + "/app/node_modules/other").c_str());
    auto warnings_for = [&](const std::string &extra_include) {
        Options o = example_options(", \"include\": [\"" + dir + "/app\"" + extra_include + "]");
        BuildSettings fresh;
        fresh.use_cache = false;
        std::string all;
        for (const auto &w : build_image(o, fresh).warnings) all += w + "\n";
        return all;
    };
    std::string w = warnings_for("");
    assert_non_null(std::strstr(w.c_str(), "@metaparticle/package links to the directory"));
    assert_non_null(std::strstr(w.c_str(), "node_modules/other links to the directory"));
    w = warnings_for(", \"" + dir + "/pkg/package.json\", \"" + dir + "/pkg/lib\"");
    assert_null(std::strstr(w.c_str(), "@metaparticle/package"));
    assert_non_null(std::strstr(w.c_str(), "node_modules/other links to the directory"));
    mptest::remove_tree(dir);
}

void test_disk_layer_cache(void **) {
    std::string dir = mptest::make_temp_dir("mp-cache-");
    BuildSettings s;
    s.cache_dir = dir + "/layers";
    Options o = example_options();
    Image a = build_image(o, s);
    // two layers, each a blob and its metadata
    int files = 0;
    for (const char *ext : {".json", ".tar.gz"}) {
        std::string cmd = "ls " + s.cache_dir + " | grep -c '" + ext + "$' > " + dir + "/n";
        std::system(cmd.c_str());
        files += std::atoi(mptest::read_file(dir + "/n").c_str());
    }
    assert_int_equal(files, 4);
    // a new process (simulated: memory cache cleared) reads them back
    clear_layer_memory_cache();
    Image b = build_image(o, s);
    assert_string_equal(a.manifest.digest.c_str(), b.manifest.digest.c_str());
    assert_true(a.layers[0].blob.data == b.layers[0].blob.data);
    // a damaged entry is not trusted: it is rebuilt, with the right digest
    std::string cmd = "for f in " + s.cache_dir + "/*.tar.gz; do printf garbage > $f; done";
    assert_int_equal(std::system(cmd.c_str()), 0);
    clear_layer_memory_cache();
    Image c = build_image(o, s);
    assert_string_equal(a.manifest.digest.c_str(), c.manifest.digest.c_str());
    assert_true(a.layers[0].blob.data == c.layers[0].blob.data);
    mptest::remove_tree(dir);
}

// A layer larger than one gzip member is several members, which gzip reads
// back as the original bytes; equal input gives equal output.
void test_gzip_members_round_trip(void **) {
    std::string data;
    data.reserve(GzipWriter::kMemberBytes + 5000000);
    uint32_t x = 12345;
    while (data.size() < GzipWriter::kMemberBytes + 5000000) {
        x = x * 1103515245u + 12345u;  // compressible but not trivial
        data += "line " + std::to_string(x % 1000) + "\n";
    }
    auto compress = [&](size_t piece) {
        std::string gz;
        GzipWriter w([&](const char *d, size_t n) { gz.append(d, n); }, 6);
        for (size_t at = 0; at < data.size(); at += piece) w.write(data.data() + at, std::min(piece, data.size() - at));
        w.finish();
        return gz;
    };
    std::string a = compress(1 << 20), b = compress(777777);
    assert_true(a == b);  // cut points do not depend on how the input was written
    std::string dir = mptest::make_temp_dir("mp-gzip-");
    mptest::write_file(dir + "/l.gz", a);
    assert_int_equal(std::system(("gzip -dc " + dir + "/l.gz > " + dir + "/l").c_str()), 0);
    assert_true(mptest::read_file(dir + "/l") == data);
    // Two members: the second gzip header follows the first member.
    assert_true(a.find(std::string("\x1f\x8b\x08", 3), 10) != std::string::npos);
    mptest::remove_tree(dir);

    std::string empty;
    GzipWriter w([&](const char *d, size_t n) { empty.append(d, n); }, 6);
    w.finish();
    assert_true(empty.size() >= 18);  // one empty member, header and trailer
}

void test_layer_contents(void **) {
    std::string dir = mptest::make_temp_dir("mp-layer-");
    mptest::write_file(dir + "/app.txt", "x");
    symlink("app.txt", (dir + "/link").c_str());
    Options o = example_options(", \"include\": [\"" + dir + "\"], \"files\": [{\"src\": \"" + dir +
                                "/app.txt\", \"dest\": \"/srv/copied.txt\"}], \"workingDir\": \"/srv\"");
    Image img = build_image(o);
    // gzip header: magic, deflate, no flags (no name), mtime 0
    const std::string &gz = img.layers[0].blob.data;
    assert_true(gz.size() > 10);
    const unsigned char *h = reinterpret_cast<const unsigned char *>(gz.data());
    assert_int_equal(h[0], 0x1f);
    assert_int_equal(h[1], 0x8b);
    assert_int_equal(h[3], 0);  // FLG: no FNAME
    assert_int_equal(h[4] | h[5] | h[6] | h[7], 0);  // MTIME 0

    std::string runtime = tar_listing(img.layers[0].blob.data, true);
    assert_non_null(std::strstr(runtime.c_str(), "libc.so.6"));
    assert_non_null(std::strstr(runtime.c_str(), "etc/passwd"));
    assert_non_null(std::strstr(runtime.c_str(), "etc/nsswitch.conf"));
    assert_non_null(std::strstr(runtime.c_str(), "drwxrwxrwt 0/0"));  // /tmp, sticky
    auto interp = read_elf(example_bin())->interp;
    // the interpreter path's symlinks are kept (e.g. lib64 -> usr/lib64 on merged-/usr systems)
    char resolved[4096];
    assert_non_null(realpath(interp.c_str(), resolved));
    assert_non_null(std::strstr(runtime.c_str(), resolved + 1));
    struct stat st;
    if (lstat("/lib64", &st) == 0 && S_ISLNK(st.st_mode)) assert_non_null(std::strstr(runtime.c_str(), "lib64 ->"));

    std::string app = tar_listing(img.layers[1].blob.data, true);
    assert_non_null(std::strstr(app.c_str(), (example_bin().substr(1)).c_str()));
    assert_non_null(std::strstr(app.c_str(), (dir.substr(1) + "/link -> app.txt").c_str()));
    assert_non_null(std::strstr(app.c_str(), "srv/copied.txt"));
    assert_null(std::strstr(app.c_str(), "libc.so.6"));  // libraries only in the runtime layer
    mptest::remove_tree(dir);
}

void test_image_reference_parsing(void **) {
    auto r = parse_image_ref("127.0.0.1:5000/team/app:v1");
    assert_string_equal(r.registry.c_str(), "127.0.0.1:5000");
    assert_string_equal(r.repository.c_str(), "team/app");
    assert_string_equal(r.tag.c_str(), "v1");
    assert_true(r.plain_http);
    r = parse_image_ref("user/app");
    assert_string_equal(r.registry.c_str(), "docker.io");
    assert_string_equal(r.api_host.c_str(), "registry-1.docker.io");
    assert_string_equal(r.repository.c_str(), "user/app");
    assert_string_equal(r.tag.c_str(), "latest");
    assert_false(r.plain_http);
    r = parse_image_ref("app:1");
    assert_string_equal(r.repository.c_str(), "library/app");
    r = parse_image_ref("ghcr.io/org/app:2");
    assert_string_equal(r.base_url().c_str(), "https://ghcr.io");
    r = parse_image_ref("localhost:5000/app");
    assert_true(r.plain_http);
}

void test_credentials_lookup(void **) {
    std::string dir = mptest::make_temp_dir("mp-cred-");
    setenv("DOCKER_CONFIG", dir.c_str(), 1);
    unsetenv("METAPARTICLE_REGISTRY_USERNAME");
    unsetenv("METAPARTICLE_REGISTRY_PASSWORD");
    // auths with base64 "user:pass"
    mptest::write_file(dir + "/config.json",
                       "{\"auths\": {\"https://127.0.0.1:5999\": {\"auth\": \"" + base64_encode("alice:s3cr:et") +
                           "\"}, \"https://index.docker.io/v1/\": {\"auth\": \"" + base64_encode("hub:pw") + "\"}}}");
    Credentials c = lookup_credentials("127.0.0.1:5999");
    assert_string_equal(c.username.c_str(), "alice");
    assert_string_equal(c.password.c_str(), "s3cr:et");
    c = lookup_credentials("docker.io");
    assert_string_equal(c.username.c_str(), "hub");
    assert_true(lookup_credentials("other.example:1").empty());

    // credHelpers run docker-credential-<name> get with the server on stdin
    std::string helper = dir + "/docker-credential-mptest";
    mptest::write_file(helper,
                       "#!/bin/sh\nread server\n"
                       "if [ \"$server\" = \"helped.example\" ]; then\n"
                       "  echo '{\"ServerURL\":\"helped.example\",\"Username\":\"bob\",\"Secret\":\"tok\"}'\n"
                       "else echo 'credentials not found in native keychain'; exit 1; fi\n");
    chmod(helper.c_str(), 0755);
    std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
    setenv("PATH", (dir + ":" + old_path).c_str(), 1);
    mptest::write_file(dir + "/config.json", "{\"credHelpers\": {\"helped.example\": \"mptest\"}, \"credsStore\": \"mptest\"}");
    c = lookup_credentials("helped.example");
    assert_string_equal(c.username.c_str(), "bob");
    assert_string_equal(c.password.c_str(), "tok");
    assert_non_null(std::strstr(c.source.c_str(), "docker-credential-mptest"));
    assert_true(lookup_credentials("unknown.example").empty());  // store says "not found"

    // a helper that does not exist is a clear error
    mptest::write_file(dir + "/config.json", "{\"credsStore\": \"nosuchhelper\"}");
    try {
        lookup_credentials("x.example");
        fail_msg("expected an error for a missing helper");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), "docker-credential-nosuchhelper"));
    }

    // environment variables win
    setenv("METAPARTICLE_REGISTRY_USERNAME", "env-user", 1);
    setenv("METAPARTICLE_REGISTRY_PASSWORD", "env-pass", 1);
    c = lookup_credentials("helped.example");
    assert_string_equal(c.username.c_str(), "env-user");
    unsetenv("METAPARTICLE_REGISTRY_USERNAME");
    unsetenv("METAPARTICLE_REGISTRY_PASSWORD");
    setenv("PATH", old_path.c_str(), 1);
    unsetenv("DOCKER_CONFIG");
    mptest::remove_tree(dir);
}

void test_name_sanitizing(void **) {
    assert_string_equal(sanitize_name("My_App.v2").c_str(), "my-app-v2");
    assert_string_equal(sanitize_name("3d-tool").c_str(), "app-3d-tool");
    assert_string_equal(sanitize_name("___").c_str(), "app");
    assert_true(sanitize_name(std::string(100, 'a')).size() <= 63);
    assert_true(validate_name(sanitize_name("--Weird..Name--")).empty());
}

}  // namespace

int main() {
    if (example_bin().empty()) {
        std::fprintf(stderr, "MP_EXAMPLE_BIN is not set (run through ctest)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elf_closure_of_real_program),
        cmocka_unit_test(test_elf_rejects_malformed_files),
        cmocka_unit_test(test_ld_so_cache_is_read),
        cmocka_unit_test(test_tar_long_names_and_links),
        cmocka_unit_test(test_image_is_reproducible),
        cmocka_unit_test(test_layers_by_how_often_they_change),
        cmocka_unit_test(test_gzip_members_round_trip),
        cmocka_unit_test(test_disk_layer_cache),
        cmocka_unit_test(test_interpreter_outside_usr_is_runtime),
        cmocka_unit_test(test_other_interpreter_installations),
        cmocka_unit_test(test_directory_link_warns_only_when_not_copied),
        cmocka_unit_test(test_layer_contents),
        cmocka_unit_test(test_image_reference_parsing),
        cmocka_unit_test(test_credentials_lookup),
        cmocka_unit_test(test_name_sanitizing),
    };
    return cmocka_run_group_tests_name("package_internal", tests, nullptr, nullptr);
}
