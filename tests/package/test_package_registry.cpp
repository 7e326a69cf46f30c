// Push to a REAL registry (Debian's docker-registry, distribution 2.8):
// without auth, with htpasswd Basic auth (bcrypt from `htpasswd -B`,
// apache2-utils), and with Bearer tokens (a token server in this test signs
// RS256 JWTs that the registry verifies against a certificate made with the
// `openssl` CLI). Every push is read back with GETs and its digests checked.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <thread>

#include "common/error.h"
#include "json/json.h"
#include "package/credentials.h"
#include "package/digest.h"
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

std::string g_dir;  // scratch dir for this run

using RegistryProc = mptest::Registry;

std::string example_bin() {
    const char *e = std::getenv("MP_EXAMPLE_BIN");
    return e ? e : "";
}

Image build_for(int port, const std::string &repo, const std::string &tag) {
    Options o = parse_options("{\"name\": \"example\", \"repository\": \"127.0.0.1:" + std::to_string(port) + "/" + repo +
                              "\", \"tag\": \"" + tag + "\", \"publish\": true, \"quiet\": true, \"command\": [\"" +
                              example_bin() + "\"]}");
    return build_image(o);
}

void clear_credentials() {
    unsetenv("METAPARTICLE_REGISTRY_USERNAME");
    unsetenv("METAPARTICLE_REGISTRY_PASSWORD");
    // an empty docker config, so the machine's ~/.docker does not leak in
    std::string d = g_dir + "/dockercfg-empty";
    mkdir(d.c_str(), 0700);
    setenv("DOCKER_CONFIG", d.c_str(), 1);
}

// Reads the pushed image back and checks it is byte-for-byte what we built.
void verify_pushed(const Image &img, const Credentials &creds) {
    ImageRef ref = parse_image_ref(img.reference);
    Registry reg(ref, creds, false);
    std::string media;
    std::string manifest = reg.get_manifest(ref.tag, "application/vnd.oci.image.manifest.v1+json", &media);
    assert_string_equal(media.c_str(), "application/vnd.oci.image.manifest.v1+json");
    assert_true(manifest == img.manifest.data);
    assert_string_equal(sha256_digest(manifest).c_str(), img.manifest.digest.c_str());
    // by digest too
    assert_true(reg.get_manifest(img.manifest.digest, "application/vnd.oci.image.manifest.v1+json", nullptr) == manifest);
    auto m = mp::json::parse(manifest);
    std::string config_digest = mp::json::get_string(mp::json::get_object(m.get(), "config"), "digest").value_or("");
    assert_true(reg.get_blob(config_digest) == img.config.data);  // get_blob re-hashes what it got
    const cJSON *layers = mp::json::get_array(m.get(), "layers");
    size_t i = 0;
    for (const cJSON *l = layers->child; l; l = l->next, ++i) {
        std::string d = mp::json::get_string(l, "digest").value_or("");
        assert_string_equal(d.c_str(), img.layers[i].blob.digest.c_str());
        assert_true(reg.get_blob(d) == img.layers[i].blob.data);
    }
    assert_int_equal(i, img.layers.size());
}

void test_push_without_auth(void **) {
    if (!mptest::have_program("docker-registry")) skip();
    clear_credentials();
    RegistryProc r;
    assert_true(mptest::start_registry(&r, g_dir, "plain", ""));
    Image img = build_for(r.port, "team", "v1");
    std::vector<std::string> lines;
    PushResult res = push_image(img, [&](const std::string &l) { lines.push_back(l); });
    assert_int_equal(res.blobs_uploaded, 3);  // two layers + config
    assert_int_equal(res.blobs_skipped, 0);
    assert_string_equal(res.manifest_digest.c_str(), img.manifest.digest.c_str());
    verify_pushed(img, {});

    // Again: everything is there already, nothing is uploaded.
    lines.clear();
    res = push_image(img, [&](const std::string &l) { lines.push_back(l); });
    assert_int_equal(res.blobs_uploaded, 0);
    assert_int_equal(res.blobs_skipped, 3);
    int skipped_lines = 0;
    for (const auto &l : lines) skipped_lines += l.find("exists, skipped") != std::string::npos;
    assert_int_equal(skipped_lines, 3);
}

void test_unreachable_registry(void **) {
    clear_credentials();
    int port = mptest::free_port_range(1);
    Image img = build_for(port, "team", "v1");
    try {
        push_image(img, {});
        fail_msg("push to a closed port succeeded");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), "cannot reach the registry"));
        assert_non_null(std::strstr(e.what(), ("127.0.0.1:" + std::to_string(port)).c_str()));
    }
}

void test_push_with_basic_auth(void **) {
    if (!mptest::have_program("docker-registry") || !mptest::have_program("htpasswd")) skip();
    // bcrypt is what the registry's htpasswd support requires.
    std::string dir = g_dir + "/basic-auth";
    mkdir(dir.c_str(), 0755);
    std::string cmd = "htpasswd -Bbn pusher 'correct horse' > " + dir + "/htpasswd";
    assert_int_equal(std::system(cmd.c_str()), 0);
    RegistryProc r;
    assert_true(mptest::start_registry(&r, g_dir, "basic", "auth:\n  htpasswd:\n    realm: mptest\n    path: " + dir + "/htpasswd\n"));
    Image img = build_for(r.port, "secure", "v1");

    clear_credentials();
    try {
        push_image(img, {});
        fail_msg("push without credentials succeeded");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), "requires credentials"));
        assert_non_null(std::strstr(e.what(), "METAPARTICLE_REGISTRY_USERNAME"));
    }

    setenv("METAPARTICLE_REGISTRY_USERNAME", "pusher", 1);
    setenv("METAPARTICLE_REGISTRY_PASSWORD", "wrong", 1);
    try {
        push_image(img, {});
        fail_msg("push with a wrong password succeeded");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), "refused the credentials"));
        assert_non_null(std::strstr(e.what(), "environment variables"));  // says where they came from
        assert_non_null(std::strstr(e.what(), ("127.0.0.1:" + std::to_string(r.port)).c_str()));
    }

    setenv("METAPARTICLE_REGISTRY_PASSWORD", "correct horse", 1);
    PushResult res = push_image(img, {});
    assert_int_equal(res.blobs_uploaded, 3);
    verify_pushed(img, lookup_credentials("127.0.0.1:" + std::to_string(r.port)));

    // The same through ~/.docker/config.json "auths", as docker login writes it.
    clear_credentials();
    std::string cfgdir = g_dir + "/dockercfg-basic";
    mkdir(cfgdir.c_str(), 0700);
    mptest::write_file(cfgdir + "/config.json", "{\"auths\": {\"127.0.0.1:" + std::to_string(r.port) + "\": {\"auth\": \"" +
                                                    base64_encode("pusher:correct horse") + "\"}}}");
    setenv("DOCKER_CONFIG", cfgdir.c_str(), 1);
    Image img2 = build_for(r.port, "secure", "v2");
    res = push_image(img2, {});
    assert_int_equal(res.blobs_skipped, 3);  // same blobs, new tag
    verify_pushed(img2, lookup_credentials("127.0.0.1:" + std::to_string(r.port)));
    clear_credentials();
}

// ---- Bearer: a token server that mints RS256 JWTs for the registry.

std::string b64url(const std::string &s) {
    std::string b = base64_encode(s, true);
    while (!b.empty() && b.back() == '=') b.pop_back();
    return b;
}

struct TokenServer {
    int fd = -1, port = 0;
    std::atomic<bool> stop{false};
    std::thread thread;
    EVP_PKEY *key = nullptr;
    std::string cert_der;
    std::atomic<int> issued{0}, refused{0};

    bool start(const std::string &key_pem, const std::string &cert_pem) {
        FILE *f = std::fopen(key_pem.c_str(), "r");
        if (!f) return false;
        key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
        std::fclose(f);
        f = std::fopen(cert_pem.c_str(), "r");
        if (!f) return false;
        X509 *x = PEM_read_X509(f, nullptr, nullptr, nullptr);
        std::fclose(f);
        if (!key || !x) return false;
        unsigned char *der = nullptr;
        int n = i2d_X509(x, &der);
        cert_der.assign(reinterpret_cast<char *>(der), static_cast<size_t>(n));
        OPENSSL_free(der);
        X509_free(x);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(fd, 16) != 0) return false;
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
        port = ntohs(a.sin_port);
        thread = std::thread([this] { loop(); });
        return true;
    }

    std::string sign(const std::string &input) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t len = 0;
        EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
        EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char *>(input.data()), input.size());
        std::string sig(len, '\0');
        EVP_DigestSign(ctx, reinterpret_cast<unsigned char *>(&sig[0]), &len,
                       reinterpret_cast<const unsigned char *>(input.data()), input.size());
        sig.resize(len);
        EVP_MD_CTX_free(ctx);
        return sig;
    }

    std::string token(const std::string &scope) {
        // scope = repository:<name>:pull,push
        std::string name = scope.substr(11, scope.rfind(':') - 11);
        long now = static_cast<long>(time(nullptr));
        std::string header = "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"x5c\":[\"" + base64_encode(cert_der) + "\"]}";
        std::string claims = "{\"iss\":\"mptest-issuer\",\"sub\":\"pusher\",\"aud\":\"mptest-registry\",\"exp\":" +
                             std::to_string(now + 300) + ",\"nbf\":" + std::to_string(now - 60) + ",\"iat\":" +
                             std::to_string(now - 60) + ",\"jti\":\"" + std::to_string(now) + "-" +
                             std::to_string(issued.load()) + "\",\"access\":[{\"type\":\"repository\",\"name\":\"" + name +
                             "\",\"actions\":[\"pull\",\"push\"]}]}";
        std::string input = b64url(header) + "." + b64url(claims);
        return input + "." + b64url(sign(input));
    }

    static std::string url_decode(const std::string &s) {
        std::string o;
        for (size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '%' && i + 2 < s.size()) {
                o += static_cast<char>(std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16));
                i += 2;
            } else {
                o += s[i] == '+' ? ' ' : s[i];
            }
        }
        return o;
    }

    void loop() {
        while (!stop) {
            pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0) continue;
            int c = accept(fd, nullptr, nullptr);
            if (c < 0) continue;
            std::string req;
            char buf[4096];
            while (req.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = read(c, buf, sizeof buf);
                if (n <= 0) break;
                req.append(buf, static_cast<size_t>(n));
            }
            std::string want = "Authorization: Basic " + base64_encode("pusher:token pass");
            std::string resp;
            std::smatch m;
            std::regex scope_re("[?&]scope=([^& ]+)");
            if (req.find(want) == std::string::npos) {
                ++refused;
                std::string body = "{\"details\":\"bad credentials\"}";
                resp = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
            } else if (std::regex_search(req, m, scope_re)) {
                ++issued;
                std::string body = "{\"token\":\"" + token(url_decode(m[1].str())) + "\",\"expires_in\":300}";
                resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body;
            } else {
                resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            }
            ssize_t w = write(c, resp.data(), resp.size());
            (void)w;
            close(c);
        }
    }

    ~TokenServer() {
        stop = true;
        if (thread.joinable()) thread.join();
        if (fd >= 0) close(fd);
        EVP_PKEY_free(key);
    }
};

void test_push_with_bearer_tokens(void **) {
    if (!mptest::have_program("docker-registry") || !mptest::have_program("openssl")) skip();
    std::string dir = g_dir + "/bearer";
    mkdir(dir.c_str(), 0755);
    std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + dir + "/key.pem -out " + dir +
                      "/cert.pem -days 2 -subj /CN=mptest-token-signer > " + dir + "/openssl.log 2>&1";
    assert_int_equal(std::system(cmd.c_str()), 0);
    TokenServer ts;
    assert_true(ts.start(dir + "/key.pem", dir + "/cert.pem"));
    RegistryProc r;
    assert_true(mptest::start_registry(&r, g_dir, "bearer",
                               "auth:\n  token:\n    realm: http://127.0.0.1:" + std::to_string(ts.port) +
                                   "/token\n    service: mptest-registry\n    issuer: mptest-issuer\n"
                                   "    rootcertbundle: " + dir + "/cert.pem\n"));
    Image img = build_for(r.port, "tokens/app", "v1");

    clear_credentials();
    setenv("METAPARTICLE_REGISTRY_USERNAME", "pusher", 1);
    setenv("METAPARTICLE_REGISTRY_PASSWORD", "not it", 1);
    try {
        push_image(img, {});
        fail_msg("push with refused token credentials succeeded");
    } catch (const mp::Error &e) {
        assert_int_equal(e.code(), MP_EREGISTRY);
        assert_non_null(std::strstr(e.what(), "token server"));
        assert_non_null(std::strstr(e.what(), "refused the credentials"));
    }
    assert_true(ts.refused.load() >= 1);

    setenv("METAPARTICLE_REGISTRY_PASSWORD", "token pass", 1);
    PushResult res = push_image(img, {});
    assert_int_equal(res.blobs_uploaded, 3);
    assert_true(ts.issued.load() >= 1);  // the registry accepted our bearer token
    verify_pushed(img, lookup_credentials("127.0.0.1:" + std::to_string(r.port)));
    clear_credentials();
}

}  // namespace

int main() {
    if (example_bin().empty()) {
        std::fprintf(stderr, "MP_EXAMPLE_BIN is not set (run through ctest)\n");
        return 1;
    }
    if (!mptest::have_program("docker-registry"))
        std::fprintf(stderr, "docker-registry is not installed (apt-get install docker-registry): registry tests skip\n");
    g_dir = mptest::make_temp_dir("mp-registry-test-");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_without_auth),
        cmocka_unit_test(test_unreachable_registry),
        cmocka_unit_test(test_push_with_basic_auth),
        cmocka_unit_test(test_push_with_bearer_tokens),
    };
    int rc = cmocka_run_group_tests_name("package_registry", tests, nullptr, nullptr);
    mptest::remove_tree(g_dir);
    return rc;
}
