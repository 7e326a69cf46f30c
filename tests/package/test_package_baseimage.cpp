// "baseImage": build a base image with the core and push it to a REAL
// registry (Debian's docker-registry), then build another program on top of
// it and push that: the base's layers come first (mounted within the same
// registry, copied to another one), its config's diff_ids and Env carry
// over, the result is reproducible, and a missing base is a clear error.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "common/error.h"
#include "json/json.h"
#include "package/base_image.h"
#include "package/credentials.h"
#include "package/digest.h"
#include "package/docker_engine.h"
#include "package/image.h"
#include "package/options.h"
#include "package/registry.h"
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

std::string g_dir;

using RegistryProc = mptest::Registry;

std::string example_bin() {
    const char *e = std::getenv("MP_EXAMPLE_BIN");
    return e ? e : "";
}

void clear_credentials() {
    unsetenv("METAPARTICLE_REGISTRY_USERNAME");
    unsetenv("METAPARTICLE_REGISTRY_PASSWORD");
    std::string d = g_dir + "/dockercfg-empty";
    mkdir(d.c_str(), 0700);
    setenv("DOCKER_CONFIG", d.c_str(), 1);
}

// The base: the example plus a data file, its own Env and WorkingDir.
Image build_base(const RegistryProc &r) {
    std::string data = g_dir + "/hello.txt";
    mptest::write_file(data, "hello from the base\n");
    Options o = parse_options("{\"name\": \"base\", \"repository\": \"" + r.host() +
                              "/lib\", \"tag\": \"v1\", \"quiet\": true, \"workingDir\": \"/srv\", "
                              "\"env\": {\"BASE_ONLY\": \"1\", \"SHARED\": \"base\"}, "
                              "\"files\": [{\"src\": \"" + data + "\", \"dest\": \"/srv/hello.txt\"}], "
                              "\"command\": [\"" + example_bin() + "\"]}");
    return build_image(o);
}

Image build_on(const std::string &repository, const std::string &base, const std::string &extra = "") {
    Options o = parse_options("{\"name\": \"app\", \"repository\": \"" + repository + "\", \"tag\": \"v1\", "
                              "\"quiet\": true, \"baseImage\": \"" + base + "\", \"ports\": [8080], "
                              "\"env\": {\"SHARED\": \"ours\"}, \"command\": [\"" + example_bin() + "\"]" + extra + "}");
    return build_image(o);
}

std::vector<std::string> strings(const cJSON *arr) {
    std::vector<std::string> v;
    const cJSON *s;
    cJSON_ArrayForEach(s, arr) v.push_back(cJSON_IsString(s) ? s->valuestring : "");
    return v;
}

// Reads `img` back from its registry: the manifest is what we built and
// every blob (base layers included) can be read there, with its digest.
void verify_pushed(const Image &img) {
    ImageRef ref = parse_image_ref(img.reference);
    Registry reg(ref, {}, false);
    std::string manifest = reg.get_manifest(ref.tag, media::kManifest, nullptr);
    assert_true(manifest == img.manifest.data);
    assert_true(reg.get_blob(img.config.digest) == img.config.data);
    for (const auto &l : img.layers) {
        std::string data = reg.get_blob(l.blob.digest);  // re-hashed by get_blob
        assert_int_equal(data.size(), l.compressed_size());
    }
}

void test_base_image_same_registry(void **) {
    if (!mptest::have_program("docker-registry")) skip();
    clear_credentials();
    RegistryProc r;
    assert_true(mptest::start_registry(&r, g_dir, "same"));
    Image base = build_base(r);
    assert_string_equal(base.reference.c_str(), (r.host() + "/lib/base:v1").c_str());
    push_image(base, {});

    Image img = build_on(r.host() + "/team", r.host() + "/lib/base:v1");
    assert_string_equal(img.base_manifest_digest.c_str(), base.manifest.digest.c_str());
    // base layers first, by digest, without their data; then our two
    assert_int_equal(img.layers.size(), base.layers.size() + 2);
    for (size_t i = 0; i < base.layers.size(); ++i) {
        assert_true(img.layers[i].from_base);
        assert_true(img.layers[i].blob.data.empty());
        assert_string_equal(img.layers[i].blob.digest.c_str(), base.layers[i].blob.digest.c_str());
        assert_int_equal(img.layers[i].size, base.layers[i].blob.data.size());
    }
    auto m = mp::json::parse(img.manifest.data);
    std::vector<std::string> layer_digests;
    const cJSON *l;
    cJSON_ArrayForEach(l, mp::json::get_array(m.get(), "layers"))
        layer_digests.push_back(mp::json::get_string(l, "digest").value_or(""));
    assert_int_equal(layer_digests.size(), img.layers.size());
    assert_string_equal(layer_digests[0].c_str(), base.layers[0].blob.digest.c_str());
    assert_string_equal(layer_digests[1].c_str(), base.layers[1].blob.digest.c_str());
    const cJSON *ann = mp::json::get_object(m.get(), "annotations");
    assert_string_equal(mp::json::get_string(ann, "org.opencontainers.image.base.digest").value_or("").c_str(),
                        base.manifest.digest.c_str());

    auto cfg = mp::json::parse(img.config.data);
    auto ids = strings(mp::json::path(cfg.get(), {"rootfs", "diff_ids"}));
    assert_int_equal(ids.size(), img.layers.size());
    assert_string_equal(ids[0].c_str(), base.layers[0].diff_id.c_str());
    assert_string_equal(ids[1].c_str(), base.layers[1].diff_id.c_str());
    int hist = cJSON_GetArraySize(mp::json::get_array(cfg.get(), "history"));
    assert_int_equal(hist, static_cast<int>(img.layers.size()));
    const cJSON *c = mp::json::get_object(cfg.get(), "config");
    auto env = strings(mp::json::get_array(c, "Env"));
    auto has = [&](const std::string &kv) {
        for (const auto &e : env)
            if (e == kv) return true;
        return false;
    };
    assert_true(has("BASE_ONLY=1"));             // from the base
    assert_true(has("SHARED=ours"));             // ours win
    assert_false(has("SHARED=base"));
    assert_true(has("METAPARTICLE_IN_CONTAINER=true"));
    assert_string_equal(mp::json::get_string(c, "WorkingDir").value_or("").c_str(), "/srv");  // kept
    assert_string_equal(strings(mp::json::get_array(c, "Entrypoint"))[0].c_str(), example_bin().c_str());
    assert_non_null(mp::json::get_object(mp::json::get_object(c, "ExposedPorts"), "8080/tcp"));

    // Push: the base layers are mounted from "base", not uploaded.
    std::vector<std::string> lines;
    PushResult res = push_image(img, [&](const std::string &s) { lines.push_back(s); });
    assert_int_equal(res.blobs_mounted, base.layers.size());
    std::string all;
    for (const auto &s : lines) all += s + "\n";
    assert_non_null(std::strstr(all.c_str(), "mounted from lib/base"));
    verify_pushed(img);

    // Reproducible: same base digest + same inputs -> same image.
    Image again = build_on(r.host() + "/team", r.host() + "/lib/base:v1");
    assert_string_equal(again.manifest.digest.c_str(), img.manifest.digest.c_str());
    // By digest: the same config (only the base.name annotation differs).
    Image by_digest = build_on(r.host() + "/team", r.host() + "/lib/base@" + base.manifest.digest);
    assert_string_equal(by_digest.config.digest.c_str(), img.config.digest.c_str());
    // "workingDir" given: ours, not the base's.
    Image wd = build_on(r.host() + "/team", r.host() + "/lib/base:v1", ", \"workingDir\": \"/\"");
    auto wcfg = mp::json::parse(wd.config.data);
    assert_string_equal(mp::json::get_string(mp::json::get_object(wcfg.get(), "config"), "WorkingDir").value_or("").c_str(), "/");

    // A multi-platform index (OCI) pointing at the base: its linux/amd64 entry.
    auto idx = mp::json::object();
    mp::json::set_int(idx.get(), "schemaVersion", 2);
    mp::json::set_string(idx.get(), "mediaType", "application/vnd.oci.image.index.v1+json");
    auto list = mp::json::array();
    for (const char *arch : {"s390x", "amd64", "arm64"}) {
        auto d = mp::json::object();
        mp::json::set_string(d.get(), "mediaType", media::kManifest);
        mp::json::set_string(d.get(), "digest", base.manifest.digest);
        mp::json::set_int(d.get(), "size", static_cast<int64_t>(base.manifest.data.size()));
        auto p = mp::json::object();
        mp::json::set_string(p.get(), "os", "linux");
        mp::json::set_string(p.get(), "architecture", arch);
        mp::json::set(d.get(), "platform", std::move(p));
        cJSON_AddItemToArray(list.get(), d.release());
    }
    mp::json::set(idx.get(), "manifests", std::move(list));
    Blob index;
    index.media_type = "application/vnd.oci.image.index.v1+json";
    index.data = mp::json::print(idx.get());
    index.digest = sha256_digest(index.data);
    ImageRef multi = parse_image_ref(r.host() + "/lib/base:multi");
    Registry(multi, {}, true).put_manifest(index);
    Image from_index = build_on(r.host() + "/team", r.host() + "/lib/base:multi");
    assert_string_equal(from_index.base_manifest_digest.c_str(), base.manifest.digest.c_str());
    assert_string_equal(from_index.config.digest.c_str(), img.config.digest.c_str());

    // For a docker load, the base layers are downloaded (and checked).
    fetch_base_layers(img, {});
    for (size_t i = 0; i < base.layers.size(); ++i) assert_true(img.layers[i].blob.data == base.layers[i].blob.data);
    std::string archive = docker_archive(img);
    assert_true(archive.size() > img.total_compressed());
}

void test_base_image_other_registry(void **) {
    if (!mptest::have_program("docker-registry")) skip();
    clear_credentials();
    RegistryProc a, b;
    assert_true(mptest::start_registry(&a, g_dir, "source"));
    assert_true(mptest::start_registry(&b, g_dir, "target"));
    Image base = build_base(a);
    push_image(base, {});
    // Built on a base in registry a, pushed to registry b: the base layers
    // are downloaded from a and uploaded to b.
    Image img = build_on(b.host() + "/team", a.host() + "/lib/base:v1");
    std::vector<std::string> lines;
    PushResult res = push_image(img, [&](const std::string &s) { lines.push_back(s); });
    assert_int_equal(res.blobs_mounted, 0);
    std::string all;
    for (const auto &s : lines) all += s + "\n";
    assert_non_null(std::strstr(all.c_str(), "copying from the base image"));
    verify_pushed(img);
}

void test_missing_base_image(void **) {
    if (!mptest::have_program("docker-registry")) skip();
    clear_credentials();
    RegistryProc r;
    assert_true(mptest::start_registry(&r, g_dir, "missing"));
    std::string ref = r.host() + "/nope:v1";
    try {
        build_on(r.host() + "/team", ref);
        fail_msg("a missing base image was accepted");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), ("baseImage \"" + ref + "\"").c_str()));
        assert_non_null(std::strstr(e.what(), "not found"));
    }
}

void test_unreachable_base_image(void **) {
    clear_credentials();
    int port = mptest::free_port_range(1);
    std::string ref = "127.0.0.1:" + std::to_string(port) + "/base:v1";
    try {
        build_on("127.0.0.1:1/team", ref);
        fail_msg("an unreachable base image was accepted");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), ("baseImage \"" + ref + "\"").c_str()));
        assert_non_null(std::strstr(e.what(), "cannot reach the registry"));
    }
}

}  // namespace

int main() {
    if (example_bin().empty()) {
        std::fprintf(stderr, "MP_EXAMPLE_BIN is not set (run through ctest)\n");
        return 1;
    }
    if (!mptest::have_program("docker-registry"))
        std::fprintf(stderr, "docker-registry is not installed (apt-get install docker-registry): base image tests skip\n");
    g_dir = mptest::make_temp_dir("mp-baseimage-test-");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_image_same_registry),
        cmocka_unit_test(test_base_image_other_registry),
        cmocka_unit_test(test_missing_base_image),
        cmocka_unit_test(test_unreachable_base_image),
    };
    int rc = cmocka_run_group_tests_name("package_baseimage", tests, nullptr, nullptr);
    mptest::remove_tree(g_dir);
    return rc;
}
