// Unit tests of libmetaparticle/kube without a server: YAML conversion,
// kubeconfig and in-cluster configuration, credential rotation, exec
// credential plugins, URL paths, and that the built-in Lock CRD equals
// deploy/crd.yaml. Usage: kube_unit_test SOURCE_DIR
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/lock_crd.h"
#include "kube/yaml.h"

#include "check.h"

using namespace mp;

namespace {

// Runs fn, expects an mp::Error whose message contains `needle`.
void expect_error(const std::function<void()> &fn, const std::string &needle, int line) {
    ++mptest::checks;
    try {
        fn();
    } catch (const Error &e) {
        if (std::string(e.what()).find(needle) == std::string::npos) {
            ++mptest::check_failures;
            std::fprintf(stderr, "line %d: error message lacks '%s': %s\n", line, needle.c_str(), e.what());
        }
        return;
    }
    ++mptest::check_failures;
    std::fprintf(stderr, "line %d: expected an error containing '%s'\n", line, needle.c_str());
}
#define EXPECT_ERROR(stmt, needle) expect_error([&] { stmt; }, needle, __LINE__)

std::string tmpdir;

std::string write(const std::string &name, const std::string &text) {
    std::string path = tmpdir + "/" + name;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    return path;
}

std::string read(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string b64(const std::string &in) {
    static const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        out += t[v >> 18 & 63], out += t[v >> 12 & 63], out += t[v >> 6 & 63], out += t[v & 63];
    }
    if (i + 1 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16;
        out += t[v >> 18 & 63], out += t[v >> 12 & 63], out += "==";
    } else if (i + 2 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
        out += t[v >> 18 & 63], out += t[v >> 12 & 63], out += t[v >> 6 & 63], out += '=';
    }
    return out;
}

void test_yaml() {
    auto j = kube::yaml_to_json(R"(
a: 1
b: "1"
c: true
d: 'true'
e: ~
f: 1.5
g: hello world
h: [x, 2, null]
base: &base {k1: v1, k2: v2}
merged:
  <<: *base
  k2: override
block: |
  line1
  line2
)");
    CHECK_EQ(json::print(j.get()),
             std::string(R"({"a":1,"b":"1","c":true,"d":"true","e":null,"f":1.5,"g":"hello world","h":["x",2,null],)"
                         R"("base":{"k1":"v1","k2":"v2"},"merged":{"k2":"override","k1":"v1"},"block":"line1\nline2\n"})"));
    CHECK_EQ(json::print(kube::yaml_to_json("[1e3, 0x1F, 0o17, .5, +1, -2.5e-1, 1.2.3, '-', e5, 1., '12', !!int '7']").get()),
             std::string(R"([1000,31,15,0.5,1,-0.25,"1.2.3","-","e5",1,"12",7])"));
    auto docs = kube::yaml_to_json_all("a: 1\n---\n---\nb: 2\n");
    CHECK_EQ(docs.size(), size_t(2));
    CHECK(cJSON_IsNull(kube::yaml_to_json("").get()));
    EXPECT_ERROR(kube::yaml_to_json("a: [1, 2\nb: 3\n", "test.yaml"), "test.yaml: invalid YAML");
    EXPECT_ERROR(kube::yaml_to_json("a: &x [*x]\n"), "");  // recursive alias: an error, not a crash
}

void test_base64() {
    CHECK_EQ(kube::base64_decode(b64("hello, world")), std::string("hello, world"));
    CHECK_EQ(kube::base64_decode("aGVs\nbG8="), std::string("hello"));
    EXPECT_ERROR(kube::base64_decode("a*b"), "invalid base64");
}

void test_kubeconfig() {
    const std::string ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
    mkdir((tmpdir + "/certs").c_str(), 0700);
    write("certs/ca.crt", ca);
    write("certs/client.crt", "CERT");
    write("certs/client.key", "KEY");
    write("token-file", "file-token\n");
    std::string cfg = write("config", R"(apiVersion: v1
kind: Config
current-context: one
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: )" + b64(ca) + R"(
- name: c2
  cluster:
    server: https://example:443
    certificate-authority: certs/ca.crt
    insecure-skip-tls-verify: true
users:
- name: u1
  user:
    token: abc
- name: u2
  user:
    client-certificate: certs/client.crt
    client-key: certs/client.key
- name: u3
  user:
    tokenFile: token-file
    client-certificate-data: )" + b64("CERTDATA") + R"(
    client-key-data: )" + b64("KEYDATA") + R"(
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: ns1}
- name: two
  context: {cluster: c2, user: u2}
- name: three
  context: {cluster: c2, user: u3}
- name: bad
  context: {cluster: nope, user: u1}
)");
    kube::LoadOptions lo;
    lo.serviceaccount_dir = tmpdir + "/no-such-sa";
    lo.kubeconfig = cfg;
    auto c = kube::load_config(lo);
    CHECK_EQ(c.server, std::string("https://127.0.0.1:6443"));
    CHECK_EQ(c.tls.ca_pem, ca);
    CHECK_EQ(c.token, std::string("abc"));
    CHECK_EQ(c.namespace_, std::string("ns1"));
    CHECK_EQ(c.context, std::string("one"));
    CHECK(!c.tls.insecure_skip_verify);

    lo.context = "two";
    c = kube::load_config(lo);
    CHECK_EQ(c.server, std::string("https://example:443"));
    CHECK_EQ(c.tls.ca_pem, ca);  // relative to the kubeconfig's directory
    CHECK(c.tls.insecure_skip_verify);
    CHECK_EQ(c.tls.cert_pem, std::string("CERT"));
    CHECK_EQ(c.tls.key_pem, std::string("KEY"));
    CHECK_EQ(c.namespace_, std::string("default"));

    lo.context = "three";
    lo.namespace_ = "explicit";
    c = kube::load_config(lo);
    CHECK_EQ(c.token_file, tmpdir + "/token-file");
    CHECK_EQ(c.tls.cert_pem, std::string("CERTDATA"));
    CHECK_EQ(c.tls.key_pem, std::string("KEYDATA"));
    CHECK_EQ(c.namespace_, std::string("explicit"));
    {
        kube::Credentials creds(c);
        CHECK_EQ(creds.current().token, std::string("file-token"));
        // Rotation: a new token file (new inode, like kubelet's atomic swap) is picked up.
        write("token-file.new", "rotated-token\n");
        std::rename((tmpdir + "/token-file.new").c_str(), (tmpdir + "/token-file").c_str());
        CHECK_EQ(creds.current().token, std::string("rotated-token"));
    }
    lo.namespace_.clear();

    lo.context = "bad";
    EXPECT_ERROR(kube::load_config(lo), "refers to cluster 'nope'");
    lo.context = "missing";
    EXPECT_ERROR(kube::load_config(lo), "no context named 'missing' (contexts: bad, one, three, two)");
    lo.context.clear();
    lo.kubeconfig = tmpdir + "/does-not-exist";
    EXPECT_ERROR(kube::load_config(lo), "cannot read kubeconfig " + tmpdir + "/does-not-exist");
    lo.kubeconfig = write("broken", "clusters: [\n");
    EXPECT_ERROR(kube::load_config(lo), "invalid YAML");
    lo.kubeconfig = write("no-current", "apiVersion: v1\nkind: Config\ncontexts: []\n");
    EXPECT_ERROR(kube::load_config(lo), "has no current-context; pass --context");

    // $KUBECONFIG: a ':' list, files merged, first definition wins, missing files skipped.
    std::string second = write("second", R"(apiVersion: v1
kind: Config
current-context: other
contexts:
- name: one
  context: {cluster: c2, user: u2}
- name: other
  context: {cluster: c1, user: u1, namespace: from-second}
)");
    setenv("KUBECONFIG", (tmpdir + "/missing:" + cfg + ":" + second).c_str(), 1);
    kube::LoadOptions env_lo;
    env_lo.serviceaccount_dir = lo.serviceaccount_dir;
    c = kube::load_config(env_lo);
    CHECK_EQ(c.context, std::string("one"));  // current-context of the first file that sets it
    CHECK_EQ(c.server, std::string("https://127.0.0.1:6443"));  // context "one" from the first file
    setenv("KUBECONFIG", (tmpdir + "/missing1:" + tmpdir + "/missing2").c_str(), 1);
    EXPECT_ERROR(kube::load_config(env_lo), "names no existing file");
    unsetenv("KUBECONFIG");
}

void test_in_cluster() {
    std::string sa = tmpdir + "/sa";
    mkdir(sa.c_str(), 0700);
    write("sa/token", "sa-token-1");
    write("sa/ca.crt", "CA");
    write("sa/namespace", "pod-ns\n");
    unsetenv("KUBECONFIG");
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    kube::LoadOptions lo;
    lo.serviceaccount_dir = sa;
    CHECK(kube::in_cluster_available(lo));
    auto c = kube::load_config(lo);
    CHECK(c.in_cluster);
    CHECK_EQ(c.server, std::string("https://[fd00::1]:443"));
    CHECK_EQ(c.tls.ca_file, sa + "/ca.crt");
    CHECK_EQ(c.namespace_, std::string("pod-ns"));
    kube::Credentials creds(c);
    CHECK_EQ(creds.current().token, std::string("sa-token-1"));
    write("sa/token.tmp", "sa-token-2");
    std::rename((sa + "/token.tmp").c_str(), (sa + "/token").c_str());
    CHECK_EQ(creds.current().token, std::string("sa-token-2"));
    lo.namespace_ = "override";
    CHECK_EQ(kube::load_config(lo).namespace_, std::string("override"));
    // In a pod, the service account wins over $KUBECONFIG; an explicit kubeconfig wins over both.
    setenv("KUBECONFIG", (tmpdir + "/config").c_str(), 1);
    CHECK(kube::load_config(lo).in_cluster);
    lo.kubeconfig = tmpdir + "/config";
    CHECK(!kube::load_config(lo).in_cluster);
    lo.kubeconfig.clear();
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    CHECK(!kube::in_cluster_available(lo));
    EXPECT_ERROR(kube::load_in_cluster(lo), "KUBERNETES_SERVICE_HOST");
}

void test_exec_plugin() {
    std::string script = write("plugin.sh", R"(#!/bin/sh
case "$KUBERNETES_EXEC_INFO" in *'"kind":"ExecCredential"'*) ;; *) echo "no exec info" >&2; exit 3;; esac
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-'"$MY_VAR"'"}}'
)");
    chmod(script.c_str(), 0755);
    std::string cfg = write("exec-config", R"(apiVersion: v1
kind: Config
current-context: x
clusters: [{name: c, cluster: {server: "https://h:1"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./plugin.sh
      env: [{name: MY_VAR, value: hello}]
      installHint: install the plugin
)");
    kube::LoadOptions lo;
    lo.serviceaccount_dir = tmpdir + "/no-such-sa";
    lo.kubeconfig = cfg;
    auto c = kube::load_config(lo);
    CHECK(c.exec != nullptr);
    kube::Credentials creds(c);
    CHECK_EQ(creds.current().token, std::string("exec-hello"));
    write("plugin.sh", "#!/bin/sh\nexit 1\n");
    CHECK(creds.invalidate());
    EXPECT_ERROR(creds.current(), "install the plugin");
}

void test_paths_and_errors() {
    kube::Config cfg;
    cfg.server = "https://k:6443";
    cfg.source = "test";
    cfg.namespace_ = "ns";
    kube::Client client(cfg);
    CHECK_EQ(client.path(kube::resources::kLease, "ns", "a.b"),
             std::string("/apis/coordination.k8s.io/v1/namespaces/ns/leases/a.b"));
    CHECK_EQ(client.path(kube::resources::kPod, "ns", "p", "log"), std::string("/api/v1/namespaces/ns/pods/p/log"));
    CHECK_EQ(client.path(kube::resources::kCustomResourceDefinition, "ignored", "locks.metaparticle.io"),
             std::string("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/locks.metaparticle.io"));
    CHECK_EQ(client.path(kube::kLockResource, ""), std::string("/apis/metaparticle.io/v1/locks"));

    http::Response r;
    r.status = 409;
    r.body = R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"Operation cannot be fulfilled","reason":"Conflict","details":{"name":"x","kind":"leases"},"code":409})";
    auto e = client.make_error("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x", r);
    CHECK(e.conflict());
    CHECK(!e.already_exists());
    r.body = R"({"kind":"Status","status":"Failure","reason":"AlreadyExists","details":{"name":"x"},"code":409})";
    e = client.make_error("POST", "/apis/coordination.k8s.io/v1/namespaces/ns/leases", r);
    CHECK(e.already_exists());
    CHECK(!e.conflict());
    r.status = 404;
    r.body = "404 page not found\n";
    e = client.make_error("GET", "/apis/metaparticle.io/v1/namespaces/ns/locks", r);
    CHECK(e.type_not_found());
    r.body = R"({"kind":"Status","status":"Failure","reason":"NotFound","details":{"name":"x","group":"metaparticle.io","kind":"locks"},"code":404})";
    e = client.make_error("GET", "/apis/metaparticle.io/v1/namespaces/ns/locks/x", r);
    CHECK(e.not_found());
    CHECK(!e.type_not_found());
    r.status = 403;
    r.body = R"({"kind":"Status","status":"Failure","reason":"Forbidden","message":"leases.coordination.k8s.io \"x\" is forbidden: User \"u\" cannot update resource","code":403})";
    e = client.make_error("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x", r);
    CHECK(e.forbidden());
    CHECK(std::string(e.what()).find("needs RBAC 'update' on leases.coordination.k8s.io in namespace ns") !=
          std::string::npos);
    r.status = 401;
    r.body = R"({"kind":"Status","status":"Failure","reason":"Unauthorized","message":"Unauthorized","code":401})";
    e = client.make_error("GET", "/api/v1/namespaces/ns/pods", r);
    CHECK(e.unauthorized());
    CHECK(std::string(e.what()).find("rejected the credentials") != std::string::npos);
}

void test_crd_matches_deploy(const std::string &src) {
    std::string file = read(src + "/deploy/crd.yaml");
    CHECK(!file.empty());
    CHECK_EQ(file, std::string(kube::lock_crd_yaml()));
    auto crd = kube::lock_crd();
    CHECK_EQ(kube::object_name(crd.get()), std::string("locks.metaparticle.io"));
    const cJSON *names = json::path(crd.get(), {"spec", "names"});
    CHECK_EQ(json::get_string(names, "kind").value_or(""), std::string("Lock"));
    CHECK_EQ(json::get_string(names, "listKind").value_or(""), std::string("LockList"));
    CHECK_EQ(json::get_string(names, "plural").value_or(""), std::string("locks"));
    CHECK_EQ(json::get_string(names, "singular").value_or(""), std::string("lock"));
}

void test_deploy_manifests_parse(const std::string &src) {
    for (const char *f : {"crd.yaml", "rbac-kubernetes.yaml", "rbac-lease.yaml", "deployment-election.yaml",
                          "deployment-lock.yaml"}) {
        std::string path = src + "/deploy/" + f;
        std::string text = read(path);
        CHECK(!text.empty());
        auto docs = kube::yaml_to_json_all(text, path);
        CHECK(!docs.empty());
        for (auto &d : docs) {
            CHECK(!json::get_string(d.get(), "apiVersion").value_or("").empty());
            CHECK(!json::get_string(d.get(), "kind").value_or("").empty());
            CHECK(!kube::object_name(d.get()).empty());
        }
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s SOURCE_DIR\n", argv[0]);
        return 2;
    }
    char tmpl[] = "/tmp/mp-kube-unit-XXXXXX";
    if (!mkdtemp(tmpl)) return 2;
    tmpdir = tmpl;
    unsetenv("KUBERNETES_SERVICE_HOST");
    test_yaml();
    test_base64();
    test_kubeconfig();
    test_in_cluster();
    test_exec_plugin();
    test_paths_and_errors();
    test_crd_matches_deploy(argv[1]);
    test_deploy_manifests_parse(argv[1]);
    std::string cleanup = "rm -rf '" + tmpdir + "'";
    if (std::system(cleanup.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", tmpdir.c_str());
    return mptest::check_report("kube_unit_test");
}
