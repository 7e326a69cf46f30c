// Building an OCI image of a program without a container daemon (as ko and
// Jib do): gzip'd tar layers, the image config and the manifest, each
// addressed by its SHA-256 digest. Reproducible: equal inputs give equal
// bytes, so equal digests (fixed mtimes, sorted entries, uid/gid 0, a gzip
// header without name or time, JSON printed in a fixed order).
//
// Layers, bottom to top (so a rebuild after changing only the program
// re-uploads only the small top layer):
//   1. runtime: the ELF interpreter and shared-library closure, the /etc
//      files a program commonly needs (passwd, group, nsswitch.conf, CA
//      certificates) and /tmp;
//   2. system: the command and "include" paths (same absolute path as on
//      the host) that lie in system directories (/usr, /opt, /etc, ...):
//      an interpreter, its standard library, a framework; changes rarely;
//   3. dependencies: what of the rest lies under node_modules,
//      site-packages or dist-packages (the packages npm or pip installed);
//   4. app: everything else of the "include" paths (the app's own files)
//      and "files" (src -> dest).
// An empty layer is left out (a native program outside /usr has no system
// layer).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "package/options.h"
#include "package/progress.h"

namespace mp::package {

namespace media {
constexpr const char *kManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char *kConfig = "application/vnd.oci.image.config.v1+json";
constexpr const char *kLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
}  // namespace media

struct Blob {
    std::string media_type;
    std::string digest;  // "sha256:<hex>"
    std::string data;
};

struct Layer {
    Blob blob;                  // gzip'd tar
    std::string diff_id;        // digest of the uncompressed tar
    uint64_t uncompressed_size = 0;
    std::string uncompressed;   // the tar itself, only when asked for (docker load)
    std::string description;    // "runtime" / "app" / "base"
    size_t files = 0;
    // A layer of the base image: referenced by digest, its data fetched only
    // when needed (push to another repository, docker load); until then
    // blob.data is empty and `size` is the compressed size.
    bool from_base = false;
    uint64_t size = 0;
    uint64_t compressed_size() const { return blob.data.empty() ? size : blob.data.size(); }
};

struct Image {
    std::string reference;  // repository/name:tag
    std::vector<Layer> layers;
    Blob config;
    Blob manifest;
    std::vector<std::string> warnings;
    // With "baseImage": the reference as written, and the manifest digest it
    // resolved to (its layers are the first of `layers`).
    std::string base_reference;
    std::string base_manifest_digest;
    uint64_t total_compressed() const;
};

struct BuildSettings {
    int gzip_level = 6;
    bool keep_uncompressed = false;           // fill Layer::uncompressed
    bool use_cache = true;                    // reuse a layer built from identical inputs in this process
    // Also keep layers on disk here and reuse them across runs ("" = not).
    // Entries are named by the fingerprint of their inputs (paths, modes,
    // links, and each host file's device, inode, size, mtime and ctime) and
    // checked against their digest when read; the oldest are pruned.
    std::string cache_dir;
    std::string ld_so_cache = "/etc/ld.so.cache";
    std::function<void(const std::string &)> log;  // progress; may be empty
    // Byte-level progress of each layer being compressed ("layer app"); may be empty.
    ProgressFn progress;
};

// The mtime of every entry and the config's "created": $SOURCE_DATE_EPOCH
// when set to a valid number of seconds, else 0 (1970-01-01).
int64_t source_date_epoch();

// Build the image described by `o`. Reads host files only (and, with
// "baseImage", the base's manifest and config from its registry; its layers
// are referenced, not downloaded); no files written. Throws Error(MP_EINVAL)
// for options that cannot be honoured (missing files), Error(MP_ERROR) for a
// library that cannot be found or read, Error(MP_EREGISTRY) for a base image
// that cannot be read.
Image build_image(const Options &o, const BuildSettings &settings = {});

// $METAPARTICLE_CACHE_DIR, else $XDG_CACHE_HOME/metaparticle/layers, else
// ~/.cache/metaparticle/layers; "" when none can be determined.
std::string default_layer_cache_dir();

// Forget the layers kept in memory (tests of the disk cache).
void clear_layer_memory_cache();

// "amd64", "arm64"... for an ELF e_machine; "" if unknown.
std::string oci_architecture(int elf_machine);

}  // namespace mp::package
