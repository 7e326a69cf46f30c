// The docker runner against a real container engine: Podman's
// Docker-compatible API (`podman system service`), with its own
// containers.conf and storage under a temp dir so nothing depends on the
// machine's podman state. The C example builds its own image (executable +
// shared libraries, nothing else), runs 2 replicas that serve HTTP, streams
// their output back with "[name-i] " prefixes, and removes them on SIGINT.
//
// Engine settings (the test environment of the project specification): runtime runc, cgroup_manager cgroupfs,
// events to a file, the vfs storage driver (no overlay mounts to leave
// behind). Deliberately NOT set, as on a stock Podman: default_ulimits (the
// runner sets Ulimits from this host's limits) and an insecure entry for the
// docker-registry on 127.0.0.1 that receives the published image (the runner
// pulls from a plain-HTTP loopback registry with tlsVerify=false).
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "common/error.h"
#include "http/client.h"
#include "json/json.h"
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
mptest::Registry *g_registry = nullptr;  // null when docker-registry is not installed
const char *kName = "package-example-c";  // the example binary's sanitized name

std::string example_bin() {
    const char *e = std::getenv("MP_EXAMPLE_BIN");
    return e ? e : "";
}

mp::http::Response engine(const std::string &method, const std::string &path) {
    mp::http::Client c;
    c.set_unix_socket(g_sock);
    mp::http::Request r;
    r.method = method;
    r.url = "http://localhost/v1.41" + path;
    r.timeout_ms = 60000;
    return c.request(r);
}

int count_our_containers() {
    std::string filters = mp::http::url_escape(std::string("{\"label\":[\"io.metaparticle.name=") + kName + "\"]}");
    auto r = engine("GET", "/containers/json?all=1&filters=" + filters);
    if (r.status != 200) return -1;
    auto j = mp::json::parse(r.body);
    return j ? cJSON_GetArraySize(j.get()) : -1;
}

void remove_our_containers() {
    std::string filters = mp::http::url_escape(std::string("{\"label\":[\"io.metaparticle.name=") + kName + "\"]}");
    auto r = engine("GET", "/containers/json?all=1&filters=" + filters);
    auto j = mp::json::parse(r.body);
    if (!cJSON_IsArray(j.get())) return;
    for (cJSON *c = j->child; c; c = c->next)
        engine("DELETE", "/containers/" + mp::json::get_string(c, "Id").value_or("x") + "?force=1");
}

std::string http_get(int port) {
    mp::http::Client c;
    mp::http::Request r;
    r.url = "http://127.0.0.1:" + std::to_string(port) + "/";
    r.timeout_ms = 5000;
    for (int i = 0; i < 50; ++i) {
        try {
            auto resp = c.request(r);
            if (resp.status == 200) return resp.body;
        } catch (const mp::Error &) {
        }
        mptest::sleep_ms(200);
    }
    return "";
}

int setup(void **) {
    if (!mptest::have_program("podman") || !mptest::have_program("runc")) {
        std::fprintf(stderr, "podman/runc are not installed (apt-get install podman runc): skipping\n");
        return 0;
    }
    g_dir = mptest::make_temp_dir("mp-podman-");  // short: the socket path must fit in 108 bytes
    std::string d = g_dir;
    std::string registries = "unqualified-search-registries = []\n";
    if (mptest::have_program("docker-registry")) {
        g_registry = new mptest::Registry();
        if (!mptest::start_registry(g_registry, d, "registry")) return -1;
        // Not marked insecure, as on a stock Podman: containerize must pull
        // from this plain-HTTP loopback registry by itself.
    } else {
        std::fprintf(stderr, "docker-registry is not installed (apt-get install docker-registry): "
                             "the publish test will skip\n");
    }
    mptest::write_file(d + "/registries.conf", registries);
    mptest::write_file(d + "/containers.conf",
                       "[containers]\n"
                       "[engine]\n"
                       "runtime = \"runc\"\n"
                       "cgroup_manager = \"cgroupfs\"\n"
                       "events_logger = \"file\"\n"
                       "events_logfile_path = \"" + d + "/events.log\"\n"
                       "tmp_dir = \"" + d + "/tmp\"\n"
                       "[network]\n"
                       "network_config_dir = \"" + d + "/networks\"\n");
    mptest::write_file(d + "/storage.conf",
                       "[storage]\n"
                       "driver = \"vfs\"\n"
                       "graphroot = \"" + d + "/root\"\n"
                       "runroot = \"" + d + "/run\"\n");
    g_sock = d + "/podman.sock";
    g_podman = new mptest::Child();
    bool ok = g_podman->start({"podman", "system", "service", "--time=0", "unix://" + g_sock},
                              {"CONTAINERS_CONF=" + d + "/containers.conf", "CONTAINERS_STORAGE_CONF=" + d + "/storage.conf",
                               "CONTAINERS_REGISTRIES_CONF=" + d + "/registries.conf"},
                              d + "/podman.log");
    if (!ok) return -1;
    for (int i = 0; i < 200; ++i) {
        try {
            if (engine("GET", "/_ping").status == 200) return 0;
        } catch (const mp::Error &) {
        }
        mptest::sleep_ms(100);
    }
    std::fprintf(stderr, "podman service did not come up:\n%s\n", mptest::read_file(d + "/podman.log").c_str());
    return -1;
}

int teardown(void **) {
    if (g_podman) {
        try {
            remove_our_containers();
        } catch (const mp::Error &) {
        }
        g_podman->signal(SIGTERM);
        if (g_podman->wait(20000) == -1) g_podman->kill_and_wait();
        delete g_podman;
        g_podman = nullptr;
    }
    delete g_registry;  // its Child stops the registry
    g_registry = nullptr;
    if (!g_dir.empty()) mptest::remove_tree(g_dir);
    return 0;
}

// Starts the example with `replicas` and waits until every replica said
// hello through the streamed, prefixed logs.
bool start_example(mptest::Child *c, int port, int replicas, std::string *seen,
                   const std::vector<std::string> &extra_args = {}) {
    std::vector<std::string> argv = {example_bin(), std::to_string(port), std::to_string(replicas)};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    if (!c->start(argv, {"DOCKER_HOST=unix://" + g_sock, "METAPARTICLE_CACHE_DIR=" + g_dir + "/cache"}))
        return false;
    for (int i = 0; i < replicas; ++i) {
        // Lines of the replicas interleave: look for each in what was seen so far.
        std::string want = "[" + std::string(kName) + "-" + std::to_string(i) + "] hello from " + kName + "-" + std::to_string(i);
        double deadline = mptest::now_ms() + 180000;
        while (seen->find(want) == std::string::npos) {
            std::string line;
            if (!c->read_line(1, &line, static_cast<int>(deadline - mptest::now_ms()))) {
                c->drain(1000);
                std::fprintf(stderr, "example stdout:\n%s%s\nstderr:\n%s\n", seen->c_str(), c->out_buf.c_str(),
                             c->err_buf.c_str());
                return false;
            }
            *seen += line + "\n";
        }
    }
    return true;
}

void test_two_replicas_stream_and_teardown(void **) {
    if (!g_podman) skip();
    int port = mptest::free_port_range(2);
    assert_true(port > 0);
    mptest::Child ex;
    std::string seen;
    assert_true(start_example(&ex, port, 2, &seen));

    // Both replicas serve on their own host port (port + i), each answering
    // with its own hostname: they really run, from nothing but the image.
    std::string a = http_get(port), b = http_get(port + 1);
    assert_string_equal(a.c_str(), (std::string("hello from ") + kName + "-0\n").c_str());
    assert_string_equal(b.c_str(), (std::string("hello from ") + kName + "-1\n").c_str());
    assert_int_equal(count_our_containers(), 2);

    ex.signal(SIGINT);
    int st = ex.wait(120000);
    ex.drain(2000);
    seen += ex.out_buf;
    assert_true(st != -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    // the replicas' last words came through before they were removed
    assert_non_null(std::strstr(seen.c_str(), (std::string("[") + kName + "-0] " + kName + "-0 stopping").c_str()));
    assert_non_null(std::strstr(ex.err_buf.c_str(), "removed 2 container(s)"));
    assert_int_equal(count_our_containers(), 0);
}

void test_leftovers_of_a_killed_run_are_replaced(void **) {
    if (!g_podman) skip();
    int port = mptest::free_port_range(1);
    std::string seen;
    {
        mptest::Child ex;
        assert_true(start_example(&ex, port, 1, &seen));
        ex.kill_and_wait();  // SIGKILL: no teardown
    }
    assert_int_equal(count_our_containers(), 1);

    mptest::Child ex;
    seen.clear();
    assert_true(start_example(&ex, port, 1, &seen));
    assert_true(ex.wait_for(2, "left by an earlier run", 5000));
    assert_int_equal(count_our_containers(), 1);
    ex.signal(SIGTERM);
    int st = ex.wait(120000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(count_our_containers(), 0);
}

// The whole publish path: build, push to the registry, and the engine pulls
// the image from there (nothing is loaded into it directly).
void test_publish_then_run_from_the_registry(void **) {
    if (!g_podman) skip();
    if (!g_registry) skip();
    int port = mptest::free_port_range(1);
    std::string repo = g_registry->host() + "/team";
    mptest::Child ex;
    std::string seen;
    assert_true(start_example(&ex, port, 1, &seen, {"--repository", repo, "--publish"}));
    assert_string_equal(http_get(port).c_str(), (std::string("hello from ") + kName + "-0\n").c_str());
    ex.signal(SIGTERM);  // tears down like Ctrl-C
    int st = ex.wait(120000);
    ex.drain(2000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(count_our_containers(), 0);

    const std::string ref = repo + "/" + kName + ":latest";
    assert_non_null(std::strstr(ex.err_buf.c_str(), ("pulling " + ref).c_str()));
    // The registry serves the manifest the example says it pushed.
    std::smatch m;
    std::regex pushed("manifest (sha256:[0-9a-f]{64}) -> " + std::regex_replace(ref, std::regex("[.:/]"), "\\$&"));
    if (!std::regex_search(ex.err_buf, m, pushed)) fail_msg("no pushed manifest digest in:\n%s", ex.err_buf.c_str());
    mp::http::Client c;
    mp::http::Request r;
    r.method = "HEAD";
    r.url = "http://" + g_registry->host() + "/v2/team/" + kName + "/manifests/latest";
    r.headers.push_back("Accept: application/vnd.oci.image.manifest.v1+json");
    r.timeout_ms = 10000;
    auto resp = c.request(r);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.header("docker-content-digest").c_str(), m[1].str().c_str());
}

void test_unreachable_engine_says_what_to_do(void **) {
    mptest::Child ex;
    std::string sock = (g_dir.empty() ? std::string("/tmp") : g_dir) + "/no-such.sock";
    assert_true(ex.start({example_bin(), "18080", "1"}, {"DOCKER_HOST=unix://" + sock, "METAPARTICLE_CACHE_DIR=" + (g_dir.empty() ? std::string("/tmp/mp-podman-unused") : g_dir) + "/cache"}));
    int st = ex.wait(120000);
    ex.drain(2000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(std::strstr(ex.err_buf.c_str(), "MP_EENGINE"));
    assert_non_null(std::strstr(ex.err_buf.c_str(), "cannot reach the container engine"));
    assert_non_null(std::strstr(ex.err_buf.c_str(), "DOCKER_HOST"));
    // reported before building anything
    assert_null(std::strstr(ex.err_buf.c_str(), "layer runtime"));
}

}  // namespace

int main() {
    if (example_bin().empty()) {
        std::fprintf(stderr, "MP_EXAMPLE_BIN is not set (run through ctest)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_replicas_stream_and_teardown),
        cmocka_unit_test(test_leftovers_of_a_killed_run_are_replaced),
        cmocka_unit_test(test_publish_then_run_from_the_registry),
        cmocka_unit_test(test_unreachable_engine_says_what_to_do),
    };
    return cmocka_run_group_tests_name("package_podman", tests, setup, teardown);
}
