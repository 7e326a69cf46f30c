/*
 * kube_app: the program the Kubernetes runner tests deploy. It drives the
 * real C API:
 *
 *   kube_app render   mp_containerize_render($KUBE_APP_OPTIONS) -> stdout
 *   kube_app run      mp_containerize($KUBE_APP_OPTIONS)
 *
 * On failure it prints "containerize failed (MP_E...): message" on stderr
 * and exits 3; otherwise "kube_app: exit code N" on stderr and exits N.
 *
 * Inside the container (a real cluster runs it; the fake API server only
 * simulates pods) it prints "kube_app up on <hostname>", then exits with
 * $KUBE_APP_EXIT when that is set (a job, or a crash loop), else serves
 * nothing and waits for SIGTERM.
 */
#include <metaparticle.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static int inside(void *user_data) {
    (void)user_data;
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    printf("kube_app up on %s\n", host);
    fflush(stdout);
    const char *code = getenv("KUBE_APP_EXIT");
    if (code && *code) return atoi(code);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stopping) pause();
    printf("kube_app on %s stopping\n", host);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "run";
    const char *options = getenv("KUBE_APP_OPTIONS");
    if (!options) options = "";
    if (strcmp(mode, "render") == 0) {
        char *out = NULL;
        int rc = mp_containerize_render(options, &out);
        if (rc != MP_OK) {
            fprintf(stderr, "containerize failed (%s): %s\n", mp_error_name(rc), mp_error_last());
            return 3;
        }
        fputs(out, stdout);
        fputc('\n', stdout);
        mp_free(out);
        return 0;
    }
    int exit_code = -1;
    int rc = mp_containerize(options, inside, NULL, &exit_code);
    if (rc != MP_OK) {
        fprintf(stderr, "containerize failed (%s): %s\n", mp_error_name(rc), mp_error_last());
        return 3;
    }
    fprintf(stderr, "kube_app: exit code %d\n", exit_code);
    return exit_code;
}
