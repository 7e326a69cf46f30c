#include "package/base_image.h"

#include "common/error.h"
#include "json/json.h"
#include "package/credentials.h"
#include "package/digest.h"

namespace mp::package {
namespace {

constexpr const char *kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char *kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char *kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char *kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";

// Our manifest is OCI, so Docker layer media types are given their OCI
// equivalents (same bytes, same digests). Non-distributable ("foreign")
// layers cannot be copied between registries: refused.
std::string oci_layer_media_type(const std::string &mt, const std::string &where) {
    if (mt == "application/vnd.docker.image.rootfs.diff.tar.gzip") return "application/vnd.oci.image.layer.v1.tar+gzip";
    if (mt == "application/vnd.docker.image.rootfs.diff.tar") return "application/vnd.oci.image.layer.v1.tar";
    if (mt.rfind("application/vnd.oci.image.layer.v1.tar", 0) == 0) return mt;
    throw Error(MP_EREGISTRY, where + " has a layer of media type \"" + mt +
                                  "\", which cannot be used as a base layer (only ordinary tar/tar+gzip/tar+zstd "
                                  "layers are supported)");
}

std::string strip_params(std::string mt) {
    auto semi = mt.find(';');
    if (semi != std::string::npos) mt.erase(semi);
    while (!mt.empty() && mt.back() == ' ') mt.pop_back();
    return mt;
}

bool is_digest(const std::string &s) { return s.rfind("sha256:", 0) == 0; }

}  // namespace

BaseImage resolve_base_image(const std::string &reference, const std::string &architecture,
                             const Registry::Log &log) {
    const std::string where = "baseImage \"" + reference + "\"";
    ImageRef ref = parse_image_ref(reference);
    BaseImage base;
    base.reference = reference;
    try {
        Registry reg(ref, lookup_credentials(ref.registry), false, log);
        const std::string accept = std::string(kOciManifest) + ", " + kDockerManifest + ", " + kOciIndex + ", " + kDockerList;
        std::string media;
        std::string body = reg.get_manifest(ref.tag, accept, &media);
        std::string digest = sha256_digest(body);
        if (is_digest(ref.tag) && digest != ref.tag)
            throw Error(MP_EREGISTRY, where + ": the registry sent a manifest whose digest is " + digest);
        auto m = json::parse(body);
        if (!m) throw Error(MP_EREGISTRY, where + ": the registry sent a manifest that is not JSON");
        media = strip_params(media);
        if (media.empty() || media == "application/json" || media == "text/plain")
            media = json::get_string(m.get(), "mediaType").value_or("");

        if (media == kOciIndex || media == kDockerList) {
            // A multi-platform image: the entry for linux/<our architecture>.
            std::string chosen;
            const cJSON *d;
            cJSON_ArrayForEach(d, json::get_array(m.get(), "manifests")) {
                const cJSON *p = json::get_object(d, "platform");
                if (json::get_string(p, "os").value_or("") == "linux" &&
                    json::get_string(p, "architecture").value_or("") == architecture) {
                    chosen = json::get_string(d, "digest").value_or("");
                    break;
                }
            }
            if (chosen.empty())
                throw Error(MP_EREGISTRY, where + " is a multi-platform image without a linux/" + architecture + " image");
            body = reg.get_manifest(chosen, std::string(kOciManifest) + ", " + kDockerManifest, &media);
            digest = sha256_digest(body);
            if (digest != chosen)
                throw Error(MP_EREGISTRY, where + ": the registry sent a manifest whose digest is " + digest +
                                              " for " + chosen);
            m = json::parse(body);
            if (!m) throw Error(MP_EREGISTRY, where + ": the registry sent a manifest that is not JSON");
            media = strip_params(media);
            if (media.empty() || media == "application/json") media = json::get_string(m.get(), "mediaType").value_or("");
        }
        if (media != kOciManifest && media != kDockerManifest)
            throw Error(MP_EREGISTRY, where + ": unsupported manifest media type \"" + media +
                                          "\" (supported: OCI image manifest, Docker schema 2)");
        base.manifest_digest = digest;

        std::string config_digest = json::get_string(json::get_object(m.get(), "config"), "digest").value_or("");
        if (!is_digest(config_digest)) throw Error(MP_EREGISTRY, where + ": the manifest has no config digest");
        base.config = reg.get_blob(config_digest);
        auto cfg = json::parse(base.config);
        if (!cfg) throw Error(MP_EREGISTRY, where + ": its config is not JSON");
        if (auto os = json::get_string(cfg.get(), "os"); os && *os != "linux")
            throw Error(MP_EREGISTRY, where + " is an image for " + *os + ", not linux");

        std::vector<std::string> diff_ids;
        const cJSON *s;
        cJSON_ArrayForEach(s, json::path(cfg.get(), {"rootfs", "diff_ids"})) {
            if (cJSON_IsString(s)) diff_ids.push_back(s->valuestring);
        }
        const cJSON *l;
        size_t i = 0;
        cJSON_ArrayForEach(l, json::get_array(m.get(), "layers")) {
            Layer layer;
            layer.from_base = true;
            layer.description = "base";
            layer.blob.media_type = oci_layer_media_type(json::get_string(l, "mediaType").value_or(""), where);
            layer.blob.digest = json::get_string(l, "digest").value_or("");
            layer.size = static_cast<uint64_t>(json::get_int(l, "size").value_or(0));
            if (!is_digest(layer.blob.digest)) throw Error(MP_EREGISTRY, where + ": a layer has no sha256 digest");
            if (i < diff_ids.size()) layer.diff_id = diff_ids[i];
            base.layers.push_back(std::move(layer));
            ++i;
        }
        if (diff_ids.size() != base.layers.size())
            throw Error(MP_EREGISTRY, where + ": its manifest lists " + std::to_string(base.layers.size()) +
                                          " layers but its config " + std::to_string(diff_ids.size()) + " diff_ids");
    } catch (const Error &e) {
        if (e.code() != MP_EREGISTRY) throw;
        std::string msg = e.what();
        if (msg.rfind(where, 0) == 0) throw;
        std::string hint;
        if (msg.find("HTTP 404") != std::string::npos)
            hint = " (not found: check the repository and tag of \"baseImage\")";
        throw Error(MP_EREGISTRY, "cannot read " + where + ": " + msg + hint);
    }
    return base;
}

void fetch_base_layers(Image &image, const Registry::Log &log) {
    std::unique_ptr<Registry> reg;
    for (auto &l : image.layers) {
        if (!l.from_base || !l.blob.data.empty()) continue;
        if (!reg) {
            ImageRef ref = parse_image_ref(image.base_reference);
            reg = std::make_unique<Registry>(ref, lookup_credentials(ref.registry), false, log);
            if (log) log("downloading the layers of the base image " + image.base_reference);
        }
        try {
            l.blob.data = reg->get_blob(l.blob.digest);
        } catch (const Error &e) {
            throw Error(e.code(), "cannot download a layer of baseImage \"" + image.base_reference + "\": " + e.what());
        }
    }
}

}  // namespace mp::package
