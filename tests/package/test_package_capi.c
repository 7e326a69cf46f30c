/* C API tests of Package: option validation, mp_in_container, the
 * inside-the-container path, and mp_containerize_render (reproducibility and
 * the rendered image config / docker objects). No engine or registry needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <metaparticle.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *render_ok(const char *opts) {
    char *out = NULL;
    int rc = mp_containerize_render(opts, &out);
    if (rc != MP_OK) fprintf(stderr, "render(%s): %s: %s\n", opts, mp_error_name(rc), mp_error_last());
    assert_int_equal(rc, MP_OK);
    assert_non_null(out);
    return out;
}

static void expect_invalid(const char *opts, const char *needle1, const char *needle2) {
    char *out = NULL;
    int rc = mp_containerize_render(opts, &out);
    assert_int_equal(rc, MP_EINVAL);
    assert_null(out);
    const char *msg = mp_error_last();
    if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
        fail_msg("message for %s lacks \"%s\"/\"%s\": %s", opts, needle1, needle2 ? needle2 : "", msg);
}

static void test_unknown_option_is_named(void **state) {
    (void)state;
    expect_invalid("{\"nmae\": \"x\"}", "\"nmae\"", "unknown option");
    expect_invalid("{\"shardSpec\": {\"shards\": 2, \"bogus\": 1}}", "shardSpec.bogus", NULL);
    expect_invalid("{\"files\": [{\"src\": \"/etc/hostname\", \"dest\": \"/x\", \"mode\": 1}]}", "files[0].mode", NULL);
}

static void test_wrong_types_and_values(void **state) {
    (void)state;
    expect_invalid("{\"replicas\": \"2\"}", "\"replicas\"", "integer");
    expect_invalid("{\"replicas\": 0}", "\"replicas\"", "from 1");
    expect_invalid("{\"ports\": [80, 70000]}", "ports[1]", "65535");
    expect_invalid("{\"ports\": [80, 80]}", "ports", "twice");
    expect_invalid("{\"runner\": \"nomad\"}", "\"runner\"", "\"docker\"");
    expect_invalid("{\"publish\": \"yes\"}", "\"publish\"", "true or false");
    expect_invalid("{\"name\": \"My_App\"}", "\"name\"", NULL);
    expect_invalid("{\"env\": {\"A\": 1}}", "env.A", "string");
    expect_invalid("{\"command\": [\"relative/prog\"]}", "command[0]", "absolute");
    expect_invalid("{\"include\": [\"not/absolute\"]}", "include[0]", "absolute");
    expect_invalid("{\"tag\": \"-bad\"}", "\"tag\"", NULL);
    expect_invalid("{\"repository\": \"Upper/Case\"}", "\"repository\"", NULL);
    expect_invalid("{\"shardSpec\": {\"shards\": 2}, \"jobSpec\": {\"count\": 1}}", "shardSpec", "jobSpec");
    expect_invalid("[1, 2]", "JSON object", NULL);
    expect_invalid("{not json", "not valid JSON", NULL);
}

static void test_publish_needs_repository(void **state) {
    (void)state;
    expect_invalid("{\"publish\": true}", "\"repository\"", "publish");
}

static void test_unreachable_base_image_and_missing_include(void **state) {
    (void)state;
    expect_invalid("{\"baseImage\": \"\"}", "baseImage", "empty");
    /* A base image whose registry cannot be reached (port 1: nothing
       listens) is a registry error naming the reference. */
    char *out = NULL;
    assert_int_equal(mp_containerize_render("{\"baseImage\": \"127.0.0.1:1/base:v1\"}", &out), MP_EREGISTRY);
    assert_null(out);
    const char *msg = mp_error_last();
    if (!strstr(msg, "baseImage \"127.0.0.1:1/base:v1\"") || !strstr(msg, "cannot reach"))
        fail_msg("message for an unreachable base image: %s", msg);
    expect_invalid("{\"include\": [\"/nonexistent/mp-test-path\"]}", "/nonexistent/mp-test-path", NULL);
}

static void test_null_arguments(void **state) {
    (void)state;
    assert_int_equal(mp_containerize_render("{}", NULL), MP_EINVAL);
    assert_int_equal(mp_in_container(NULL), MP_EINVAL);
    int code;
    assert_int_equal(mp_containerize("{}", NULL, NULL, &code), MP_EINVAL);
}

static void test_in_container_detection(void **state) {
    (void)state;
    int inside = -1;
    unsetenv("METAPARTICLE_IN_CONTAINER");
    assert_int_equal(mp_in_container(&inside), MP_OK);
    assert_int_equal(inside, 0);
    const char *yes[] = {"true", "1", "TRUE"};
    for (size_t i = 0; i < 3; ++i) {
        setenv("METAPARTICLE_IN_CONTAINER", yes[i], 1);
        assert_int_equal(mp_in_container(&inside), MP_OK);
        assert_int_equal(inside, 1);
    }
    const char *no[] = {"false", "0", ""};
    for (size_t i = 0; i < 3; ++i) {
        setenv("METAPARTICLE_IN_CONTAINER", no[i], 1);
        assert_int_equal(mp_in_container(&inside), MP_OK);
        assert_int_equal(inside, 0);
    }
    unsetenv("METAPARTICLE_IN_CONTAINER");
}

static int main_calls;
static int fake_main(void *ud) {
    main_calls++;
    return *(int *)ud;
}

static void test_inside_runs_main(void **state) {
    (void)state;
    setenv("METAPARTICLE_IN_CONTAINER", "true", 1);
    int want = 42, code = -1;
    main_calls = 0;
    assert_int_equal(mp_containerize("{\"ports\": [8080], \"replicas\": 3}", fake_main, &want, &code), MP_OK);
    assert_int_equal(code, 42);
    assert_int_equal(main_calls, 1);
    /* Options are validated inside too: same program, same errors. */
    assert_int_equal(mp_containerize("{\"bogus\": 1}", fake_main, &want, &code), MP_EINVAL);
    assert_int_equal(main_calls, 1);
    unsetenv("METAPARTICLE_IN_CONTAINER");
}

static const char *digest_of(cJSON *root) {
    cJSON *img = cJSON_GetObjectItem(root, "image");
    return cJSON_GetStringValue(cJSON_GetObjectItem(img, "digest"));
}

static void test_render_is_reproducible(void **state) {
    (void)state;
    unsetenv("SOURCE_DATE_EPOCH");
    const char *opts = "{\"name\": \"repro\", \"ports\": [8080], \"env\": {\"A\": \"1\"}}";
    char *a = render_ok(opts);
    char *b = render_ok(opts);
    assert_string_equal(a, b); /* every byte, so every digest */

    char *c = render_ok("{\"name\": \"repro\", \"ports\": [8080], \"env\": {\"A\": \"2\"}}");
    cJSON *ja = cJSON_Parse(a), *jc = cJSON_Parse(c);
    assert_string_not_equal(digest_of(ja), digest_of(jc));

    setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
    char *d = render_ok(opts);
    unsetenv("SOURCE_DATE_EPOCH");
    cJSON *jd = cJSON_Parse(d);
    assert_string_not_equal(digest_of(ja), digest_of(jd));
    cJSON *cfg = cJSON_GetObjectItem(cJSON_GetObjectItem(jd, "image"), "config");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "created")), "2023-11-14T22:13:20Z");
    cJSON *cfg0 = cJSON_GetObjectItem(cJSON_GetObjectItem(ja, "image"), "config");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cfg0, "created")), "1970-01-01T00:00:00Z");

    cJSON_Delete(ja);
    cJSON_Delete(jc);
    cJSON_Delete(jd);
    mp_free(a);
    mp_free(b);
    mp_free(c);
    mp_free(d);
}

static int array_has_string(cJSON *arr, const char *s) {
    cJSON *e;
    cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) return 1;
    return 0;
}

static void test_render_contents(void **state) {
    (void)state;
    char *out = render_ok("{\"name\": \"web\", \"repository\": \"127.0.0.1:5000/team\", \"tag\": \"v1\", "
                          "\"ports\": [8080, 9090], \"replicas\": 3, \"env\": {\"LOG\": \"debug\"}}");
    cJSON *root = cJSON_Parse(out);
    assert_non_null(root);
    cJSON *img = cJSON_GetObjectItem(root, "image");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(img, "reference")), "127.0.0.1:5000/team/web:v1");
    cJSON *manifest = cJSON_GetObjectItem(img, "manifest");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(manifest, "mediaType")),
                        "application/vnd.oci.image.manifest.v1+json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(manifest, "layers")), 2);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(img, "config"), "config");
    /* ENTRYPOINT is this very program by default. */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = 0;
    cJSON *ep = cJSON_GetObjectItem(c, "Entrypoint");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(ep, 0)), exe);
    cJSON *env = cJSON_GetObjectItem(c, "Env");
    assert_true(array_has_string(env, "METAPARTICLE_IN_CONTAINER=true"));
    assert_true(array_has_string(env, "LOG=debug"));
    cJSON *exposed = cJSON_GetObjectItem(c, "ExposedPorts");
    assert_non_null(cJSON_GetObjectItem(exposed, "8080/tcp"));
    assert_non_null(cJSON_GetObjectItem(exposed, "9090/tcp"));

    cJSON *docker = cJSON_GetObjectItem(root, "docker");
    assert_int_equal(cJSON_GetArraySize(docker), 3);
    cJSON *third = cJSON_GetArrayItem(docker, 2);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(third, "name")), "web-2");
    cJSON *body = cJSON_GetObjectItem(third, "body");
    cJSON *b9090 = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "HostConfig"), "PortBindings"), "9090/tcp"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(b9090, "HostPort")), "9092");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(b9090, "HostIp")), "127.0.0.1");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "Labels"), "io.metaparticle.name")), "web");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(root, "kubernetes")));
    cJSON_Delete(root);
    mp_free(out);

    /* public binds all interfaces; jobSpec.count sets the number of containers */
    out = render_ok("{\"name\": \"job\", \"ports\": [7000], \"public\": true, \"jobSpec\": {\"count\": 4}}");
    root = cJSON_Parse(out);
    docker = cJSON_GetObjectItem(root, "docker");
    assert_int_equal(cJSON_GetArraySize(docker), 4);
    body = cJSON_GetObjectItem(cJSON_GetArrayItem(docker, 0), "body");
    cJSON *b = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "HostConfig"), "PortBindings"), "7000/tcp"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(b, "HostIp")), "0.0.0.0");
    cJSON_Delete(root);
    mp_free(out);
}

/* The pod spec of the first rendered Kubernetes object of `kind`. */
static cJSON *pod_spec_of(cJSON *root, const char *kind) {
    cJSON *obj;
    cJSON_ArrayForEach(obj, cJSON_GetObjectItem(root, "kubernetes")) {
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "kind")), kind) == 0)
            return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "template"), "spec");
    }
    fail_msg("no %s rendered", kind);
    return NULL;
}

/* imagePullSecrets: the pods of a Deployment or a Job name the Secrets to
 * pull a private image with; bad names are refused before anything runs. */
static void test_image_pull_secrets(void **state) {
    (void)state;
    const char *variants[][2] = {{"{\"name\": \"web\", \"ports\": [8080], ", "Deployment"},
                                 {"{\"name\": \"batch\", \"jobSpec\": {\"count\": 2}, ", "Job"}};
    for (int i = 0; i < 2; i++) {
        char opts[256];
        snprintf(opts, sizeof opts, "%s\"imagePullSecrets\": [\"regcred\", \"other.cred\"]}", variants[i][0]);
        char *out = render_ok(opts);
        cJSON *root = cJSON_Parse(out);
        cJSON *secrets = cJSON_GetObjectItem(pod_spec_of(root, variants[i][1]), "imagePullSecrets");
        assert_int_equal(cJSON_GetArraySize(secrets), 2);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(secrets, 0), "name")), "regcred");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(secrets, 1), "name")), "other.cred");
        cJSON_Delete(root);
        mp_free(out);
    }
    char *out = render_ok("{\"name\": \"web\", \"ports\": [8080]}");
    cJSON *root = cJSON_Parse(out);
    assert_null(cJSON_GetObjectItem(pod_spec_of(root, "Deployment"), "imagePullSecrets"));
    cJSON_Delete(root);
    mp_free(out);
    expect_invalid("{\"imagePullSecrets\": \"regcred\"}", "\"imagePullSecrets\"", "Secrets");
    expect_invalid("{\"imagePullSecrets\": [\"regcred\", \"Bad_Name\"]}", "imagePullSecrets[1]", "Bad_Name");
}

static int never_main(void *ud) {
    (void)ud;
    return 99;
}

/* dryRun prints YAML for `kubectl apply -f -` on stdout and acts on nothing. */
static void test_dry_run_prints_objects(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        setenv("DOCKER_HOST", "unix:///nonexistent/engine.sock", 1); /* would fail if it tried */
        int code = -1;
        int rc = mp_containerize("{\"name\": \"dry\", \"replicas\": 2, \"dryRun\": true, \"quiet\": true}",
                                 never_main, NULL, &code);
        fflush(stdout);
        _exit(rc == MP_OK && code == 0 ? 0 : 3);
    }
    close(fds[1]);
    char *buf = malloc(1 << 20);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, (1 << 20) - 1 - len)) > 0) len += (size_t)n;
    buf[len] = 0;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* YAML for kubectl: comment lines (the image and the Docker containers),
     * then one document per Kubernetes object. */
    const char *first_doc = strstr(buf, "\n---\n");
    assert_non_null(first_doc);
    for (const char *line = buf; line <= first_doc; line = strchr(line, '\n') + 1)
        assert_int_equal(line[0], '#');
    assert_non_null(strstr(buf, "#       Entrypoint:\n"));
    assert_non_null(strstr(buf, "# - name: dry-0\n"));
    assert_non_null(strstr(buf, "# - name: dry-1\n"));
    assert_non_null(strstr(buf, "#       Ulimits:\n")); /* the engine gets this host's limits */
    assert_non_null(strstr(first_doc, "\n---\napiVersion: apps/v1\nkind: Deployment\n"));
    assert_null(strstr(first_doc + 1, "\n#")); /* nothing but objects after the comments */
    free(buf);
}

static void test_default_name_from_executable(void **state) {
    (void)state;
    char *out = render_ok(NULL);
    cJSON *root = cJSON_Parse(out);
    const char *ref = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "image"), "reference"));
    /* this binary is test_package_capi: sanitized to a DNS label */
    assert_string_equal(ref, "test-package-capi:latest");
    cJSON_Delete(root);
    mp_free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_option_is_named),
        cmocka_unit_test(test_wrong_types_and_values),
        cmocka_unit_test(test_publish_needs_repository),
        cmocka_unit_test(test_unreachable_base_image_and_missing_include),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_in_container_detection),
        cmocka_unit_test(test_inside_runs_main),
        cmocka_unit_test(test_render_is_reproducible),
        cmocka_unit_test(test_render_contents),
        cmocka_unit_test(test_image_pull_secrets),
        cmocka_unit_test(test_dry_run_prints_objects),
        cmocka_unit_test(test_default_name_from_executable),
    };
    return cmocka_run_group_tests_name("package_capi", tests, NULL, NULL);
}
