// The mp-sidecar image, built by our own image builder (mp-image: no
// Dockerfile, no daemon), pushed to a real docker-registry on 127.0.0.1 and
// run under Podman's Docker-compatible API, where it must answer /healthz.
//
// The Podman here is configured as stock as this sandbox allows (runtime
// runc, cgroupfs, file events, vfs storage): no default_ulimits and no
// insecure-registry entry, so the pull goes through Engine::pull's
// plain-HTTP path and the container gets the Ulimits containerize sets.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.h"
#include "http/client.h"
#include "json/json.h"
#include "package/docker_engine.h"
#include "package/options.h"
#include "package/render.h"
#include "proc.h"

// cmocka last: its fail() macro would break standard headers.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

namespace {

std::string g_dir, g_sock;
mptest::Child *g_podman = nullptr;
mptest::Registry *g_registry = nullptr;

std::string env_or(const char *name) {
    const char *v = std::getenv(name);
    return v ? v : "";
}

int setup(void **) {
    for (const char *p : {"podman", "runc", "docker-registry"}) {
        if (!mptest::have_program(p)) {
            std::fprintf(stderr, "%s is not installed (apt-get install podman runc docker-registry): skipping\n", p);
            return 0;
        }
    }
    g_dir = mptest::make_temp_dir("mp-sci-");  // short: the socket path must fit in 108 bytes
    const std::string d = g_dir;
    g_registry = new mptest::Registry();
    if (!mptest::start_registry(g_registry, d, "registry")) return -1;
    mptest::write_file(d + "/registries.conf", "unqualified-search-registries = []\n");
    mptest::write_file(d + "/containers.conf",
                       "[engine]\n"
                       "runtime = \"runc\"\n"
                       "cgroup_manager = \"cgroupfs\"\n"
                       "events_logger = \"file\"\n"
                       "events_logfile_path = \"" + d + "/events.log\"\n"
                       "tmp_dir = \"" + d + "/tmp\"\n"
                       "[network]\n"
                       "network_config_dir = \"" + d + "/networks\"\n");
    mptest::write_file(d + "/storage.conf",
                       "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + d + "/root\"\nrunroot = \"" + d + "/run\"\n");
    g_sock = d + "/podman.sock";
    g_podman = new mptest::Child();
    if (!g_podman->start({"podman", "system", "service", "--time=0", "unix://" + g_sock},
                         {"CONTAINERS_CONF=" + d + "/containers.conf", "CONTAINERS_STORAGE_CONF=" + d + "/storage.conf",
                          "CONTAINERS_REGISTRIES_CONF=" + d + "/registries.conf"},
                         d + "/podman.log"))
        return -1;
    for (int i = 0; i < 200; ++i) {
        try {
            mp::package::Engine e("unix://" + g_sock);
            e.ping();
            return 0;
        } catch (const mp::Error &) {
        }
        mptest::sleep_ms(100);
    }
    std::fprintf(stderr, "podman service did not come up:\n%s\n", mptest::read_file(d + "/podman.log").c_str());
    return -1;
}

int teardown(void **) {
    if (g_podman) {
        g_podman->signal(SIGTERM);
        if (g_podman->wait(20000) == -1) g_podman->kill_and_wait();
        delete g_podman;
        g_podman = nullptr;
    }
    delete g_registry;
    g_registry = nullptr;
    if (!g_dir.empty()) mptest::remove_tree(g_dir);
    return 0;
}

int healthz(int port) {
    mp::http::Client c;
    mp::http::Request r;
    r.url = "http://127.0.0.1:" + std::to_string(port) + "/healthz";
    r.timeout_ms = 2000;
    try {
        return static_cast<int>(c.request(r).status);
    } catch (const mp::Error &) {
        return 0;
    }
}

void sidecar_image_pushed_pulled_and_healthy() {
    const std::string sidecar = env_or("MP_SIDECAR_BIN"), tool = env_or("MP_IMAGE_BIN");
    assert_false(sidecar.empty());
    assert_false(tool.empty());

    // Build and push with the tool, as deploy/build-sidecar-image.sh does
    // (plus the Kubernetes plugin when this build has one: it is dlopen'd,
    // so not in the ELF closure).
    std::vector<std::string> argv = {tool, "--repository", g_registry->host() + "/metaparticle", "--name", "mp-sidecar",
                                     "--tag", "test", "--port", "13131"};
    std::string plugin = sidecar.substr(0, sidecar.rfind('/')) + "/mp-sidecar-kubernetes.so";
    struct stat st;
    if (::stat(plugin.c_str(), &st) == 0) argv.insert(argv.end(), {"--include", plugin});
    argv.insert(argv.end(), {"--", sidecar});
    mptest::Child build;
    assert_true(build.start(argv, {"METAPARTICLE_CACHE_DIR=" + g_dir + "/cache"}));
    std::string ref;
    bool got = build.read_line(1, &ref, 120000);
    build.drain(5000);
    int status = build.wait(10000);
    if (!got || status != 0) std::fprintf(stderr, "mp-image failed:\n%s\n", build.err_buf.c_str());
    assert_true(got);
    assert_int_equal(status, 0);
    const std::string want_prefix = g_registry->host() + "/metaparticle/mp-sidecar:test@sha256:";
    assert_int_equal(ref.compare(0, want_prefix.size(), want_prefix), 0);

    // Pull through the engine (plain HTTP, no registries.conf entry) and run
    // it listening on all interfaces, published on a free host port.
    mp::package::Engine engine("unix://" + g_sock);
    const std::string tagged = g_registry->host() + "/metaparticle/mp-sidecar:test";
    engine.pull(tagged, "", true);
    std::string id = engine.image_id(tagged);
    assert_false(id.empty());

    int port = mptest::free_port_range(1);
    assert_true(port > 0);
    auto o = mp::package::parse_options("{\"name\": \"mp-sidecar-test\", \"ports\": [" + std::to_string(port) +
                                        "], \"command\": [\"" + sidecar + "\"]}");
    auto body = mp::package::docker_create_body(o, 0, id);
    auto cmd = mp::json::array();
    for (const std::string &a : {std::string("--listen"), "0.0.0.0:" + std::to_string(port)})
        cJSON_AddItemToArray(cmd.get(), cJSON_CreateString(a.c_str()));
    mp::json::set(body.get(), "Cmd", std::move(cmd));
    std::string cid = engine.create_container("mp-sidecar-test", body.get());
    engine.start_container(cid);

    int code = 0;
    for (double deadline = mptest::now_ms() + 60000; mptest::now_ms() < deadline && code != 200;) {
        code = healthz(port);
        if (code != 200) mptest::sleep_ms(200);
    }
    if (code != 200) {
        auto info = engine.inspect_container(cid);
        std::fprintf(stderr, "container state: %s\npodman log:\n%s\n",
                     info ? mp::json::print(mp::json::get_object(info.get(), "State")).c_str() : "?",
                     mptest::read_file(g_dir + "/podman.log").c_str());
    }
    engine.stop_container(cid, 5);
    engine.remove_container(cid);
    assert_int_equal(code, 200);
}

void test_sidecar_image_pushed_pulled_and_healthy(void **) {
    if (!g_podman) skip();
    try {
        sidecar_image_pushed_pulled_and_healthy();
    } catch (const std::exception &e) {  // an engine or registry error: say which
        fail_msg("%s", e.what());
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sidecar_image_pushed_pulled_and_healthy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
