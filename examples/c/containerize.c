/*
 * containerize.c: a program that packages itself as a container image and
 * runs replicas of itself.
 *
 *   ./containerize [port [replicas]] [--repository REPO [--publish]]
 *
 * (defaults: port 8080, 2 replicas). With --publish the image is pushed to
 * REPO (e.g. registry.example.com/team) and the engine pulls it from there;
 * otherwise it is loaded into the engine directly.
 *
 * Outside a container, mp_containerize builds an image of this very program
 * (executable + shared libraries, no Dockerfile, no daemon), loads it into
 * Docker or Podman (DOCKER_HOST), starts the replicas and streams their
 * output, each line prefixed with the replica's name, until Ctrl-C, which
 * removes them. Inside, each replica serves "hello from <hostname>" over HTTP;
 * replica i is reachable on host port port + i.
 */
#include <metaparticle.h>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct config {
    int port;
};

static volatile sig_atomic_t stopping = 0;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

/* Runs inside the container: a minimal HTTP server. */
static int serve(void *user_data) {
    const struct config *cfg = user_data;
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);

    /* PID 1 in a container gets no default signal actions: without a
     * handler, `docker stop` would have to wait and kill. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)cfg->port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
        perror("listen");
        return 1;
    }
    printf("hello from %s, serving on port %d\n", host, cfg->port);
    fflush(stdout);

    while (!stopping) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0) continue;
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        char req[1024];
        ssize_t n = read(c, req, sizeof req); /* the request itself does not matter */
        (void)n;
        char body[512], resp[1024];
        int blen = snprintf(body, sizeof body, "hello from %s\n", host);
        int rlen = snprintf(resp, sizeof resp,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                            "Connection: close\r\n\r\n%s",
                            blen, body);
        ssize_t w = write(c, resp, (size_t)rlen);
        (void)w;
        close(c);
        printf("%s answered a request\n", host);
        fflush(stdout);
    }
    printf("%s stopping\n", host);
    close(fd);
    return 0;
}

static int usage(const char *prog) {
    fprintf(stderr, "usage: %s [port [replicas]] [--repository REPO [--publish]]\n", prog);
    return 2;
}

int main(int argc, char **argv) {
    struct config cfg = {8080};
    int replicas = 2, positional = 0, publish = 0;
    const char *repository = NULL;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--publish") == 0) {
            publish = 1;
        } else if (strcmp(argv[i], "--repository") == 0 && i + 1 < argc) {
            repository = argv[++i];
        } else if (argv[i][0] != '-' && positional < 2) {
            if (positional++ == 0)
                cfg.port = atoi(argv[i]);
            else
                replicas = atoi(argv[i]);
        } else {
            return usage(argv[0]);
        }
    }
    /* A repository is a registry host and path: no JSON quoting needed, but
     * refuse what would break the options string. */
    if (repository && strpbrk(repository, "\"\\") != NULL) return usage(argv[0]);

    char options[1024];
    int n;
    if (repository)
        n = snprintf(options, sizeof options, "{\"ports\": [%d], \"replicas\": %d, \"repository\": \"%s\", \"publish\": %s}",
                     cfg.port, replicas, repository, publish ? "true" : "false");
    else
        n = snprintf(options, sizeof options, "{\"ports\": [%d], \"replicas\": %d, \"publish\": %s}", cfg.port,
                     replicas, publish ? "true" : "false");
    if (n < 0 || (size_t)n >= sizeof options) return usage(argv[0]);

    int exit_code = 0;
    int rc = mp_containerize(options, serve, &cfg, &exit_code);
    if (rc != MP_OK) {
        fprintf(stderr, "containerize failed (%s): %s\n", mp_error_name(rc), mp_error_last());
        return 1;
    }
    return exit_code;
}
