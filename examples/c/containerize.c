/*
 * containerize.c: a program that packages itself as a container image and
 * runs replicas of itself.
 *
 *   ./containerize [port [replicas]]     (defaults: 8080, 2)
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

int main(int argc, char **argv) {
    struct config cfg = {argc > 1 ? atoi(argv[1]) : 8080};
    int replicas = argc > 2 ? atoi(argv[2]) : 2;

    char options[256];
    snprintf(options, sizeof options, "{\"ports\": [%d], \"replicas\": %d}", cfg.port, replicas);

    int exit_code = 0;
    int rc = mp_containerize(options, serve, &cfg, &exit_code);
    if (rc != MP_OK) {
        fprintf(stderr, "containerize failed (%s): %s\n", mp_error_name(rc), mp_error_last());
        return 1;
    }
    return exit_code;
}
