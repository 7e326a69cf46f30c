#define _GNU_SOURCE
#include "fake_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define MAX_CONNS 64
#define MAX_STREAMS 16

struct fake_server {
    int listen_fd;
    int stop_pipe[2];
    int port;
    char url[64];
    fake_handler handler;
    void *ud;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int requests;
    int conn_fds[MAX_CONNS];
    pthread_t conn_threads[MAX_CONNS];
    int nconns;
    int stream_fds[MAX_STREAMS];
    double stream_closed_at[MAX_STREAMS];
    int nstreams;
    char greeting[1024];
};

struct conn_arg {
    fake_server *f;
    int fd;
};

/* Wait until fd is readable or the server stops; 1 readable, 0 stopping. */
static int wait_readable(fake_server *f, int fd) {
    struct pollfd p[2] = {{fd, POLLIN, 0}, {f->stop_pipe[0], POLLIN, 0}};
    for (;;) {
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (p[1].revents & POLLIN)) return 0;
        if (p[0].revents) return 1;
    }
}

static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) return;
        data += n;
        len -= (size_t)n;
    }
}

const char *fake_reply(char *out, size_t outlen, int status, const char *json) {
    snprintf(out, outlen,
             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", status,
             strlen(json), json);
    return out;
}

static void *conn_main(void *arg) {
    struct conn_arg *ca = arg;
    fake_server *f = ca->f;
    int fd = ca->fd;
    free(ca);
    static __thread char buf[65536];
    static __thread char out[65536];
    size_t have = 0;
    for (;;) {
        /* Read one request: head, then Content-Length bytes of body. */
        char *end = NULL;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have + 1 >= sizeof buf || !wait_readable(f, fd)) goto done;
            ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
            if (n <= 0) goto done;
            have += (size_t)n;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        buf[have] = 0;
        size_t body_len = 0;
        char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl && cl < end) body_len = strtoul(cl + 17, NULL, 10);
        while (have < head_len + body_len) {
            if (have + 1 >= sizeof buf || !wait_readable(f, fd)) goto done;
            ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
            if (n <= 0) goto done;
            have += (size_t)n;
        }
        char method[16] = "", path[1024] = "";
        sscanf(buf, "%15s %1023s", method, path);
        char *body = strndup(buf + head_len, body_len);
        memmove(buf, buf + head_len + body_len, have - head_len - body_len);
        have -= head_len + body_len;
        pthread_mutex_lock(&f->mu);
        int index = f->requests++;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        const char *reply = f->handler(f->ud, index, method, path, body, out, sizeof out);
        free(body);
        if (reply == FAKE_CLOSE) goto done;
        if (reply == FAKE_RESET) {
            struct linger l = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            goto done;
        }
        if (reply == FAKE_HANG) {
            char sink[4096];
            while (wait_readable(f, fd) && recv(fd, sink, sizeof sink, 0) > 0) {
            }
            goto done;
        }
        if (reply == FAKE_HUGE) {
            const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000000000\r\n\r\n";
            send_all(fd, head, strlen(head));
            memset(out, ' ', sizeof out);
            for (;;) {
                pthread_mutex_lock(&f->mu);
                int stop = f->stopping;
                pthread_mutex_unlock(&f->mu);
                if (stop || send(fd, out, sizeof out, MSG_NOSIGNAL) <= 0) break;
            }
            goto done;
        }
        if (reply == FAKE_STREAM) {
            const char *head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
            send_all(fd, head, strlen(head));
            pthread_mutex_lock(&f->mu);
            if (f->greeting[0]) {
                char chunk[1200];
                int len = snprintf(chunk, sizeof chunk, "%zx\r\n%s\n\r\n", strlen(f->greeting) + 1, f->greeting);
                send_all(fd, chunk, (size_t)len);
            }
            int n = f->nstreams < MAX_STREAMS ? f->nstreams++ : -1;
            if (n >= 0) {
                f->stream_fds[n] = fd;
                f->stream_closed_at[n] = 0;
            }
            pthread_cond_broadcast(&f->cv);
            pthread_mutex_unlock(&f->mu);
            char sink[4096];
            while (wait_readable(f, fd) && recv(fd, sink, sizeof sink, 0) > 0) {
            }
            pthread_mutex_lock(&f->mu);
            if (n >= 0) {
                f->stream_fds[n] = -1;
                f->stream_closed_at[n] = now_ms();
            }
            pthread_cond_broadcast(&f->cv);
            pthread_mutex_unlock(&f->mu);
            goto done;
        }
        send_all(fd, reply, strlen(reply));
    }
done:
    shutdown(fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *arg) {
    fake_server *f = arg;
    for (;;) {
        if (!wait_readable(f, f->listen_fd)) return NULL;
        int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_mutex_lock(&f->mu);
        if (f->nconns >= MAX_CONNS || f->stopping) {
            pthread_mutex_unlock(&f->mu);
            close(fd);
            continue;
        }
        struct conn_arg *ca = malloc(sizeof *ca);
        ca->f = f;
        ca->fd = fd;
        f->conn_fds[f->nconns] = fd;
        pthread_create(&f->conn_threads[f->nconns], NULL, conn_main, ca);
        f->nconns++;
        pthread_mutex_unlock(&f->mu);
    }
}

fake_server *fake_start(fake_handler handler, void *ud) {
    fake_server *f = calloc(1, sizeof *f);
    f->handler = handler;
    f->ud = ud;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    for (int i = 0; i < MAX_STREAMS; i++) f->stream_fds[i] = -1;
    f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(f->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(f->listen_fd, 64) != 0 ||
        getsockname(f->listen_fd, (struct sockaddr *)&a, &alen) != 0 || pipe2(f->stop_pipe, O_CLOEXEC) != 0) {
        close(f->listen_fd);
        free(f);
        return NULL;
    }
    f->port = ntohs(a.sin_port);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    pthread_create(&f->acceptor, NULL, accept_main, f);
    return f;
}

void fake_stop(fake_server *f) {
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stopping = 1;
    pthread_mutex_unlock(&f->mu);
    if (write(f->stop_pipe[1], "x", 1) < 0) {
    }
    pthread_join(f->acceptor, NULL);
    close(f->listen_fd);
    for (int i = 0; i < f->nconns; i++) pthread_join(f->conn_threads[i], NULL);
    for (int i = 0; i < f->nconns; i++) close(f->conn_fds[i]);
    close(f->stop_pipe[0]);
    close(f->stop_pipe[1]);
    free(f);
}

const char *fake_url(fake_server *f) { return f->url; }
int fake_port(fake_server *f) { return f->port; }

int fake_request_count(fake_server *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->requests;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fake_stream_count(fake_server *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->nstreams;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fake_stream_wait_count(fake_server *f, int n, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    while (fake_stream_count(f) < n) {
        if (now_ms() > deadline) return -1;
        sleep_ms(5);
    }
    return 0;
}

int fake_stream_send(fake_server *f, const char *line) {
    pthread_mutex_lock(&f->mu);
    int fd = f->nstreams > 0 ? f->stream_fds[f->nstreams - 1] : -1;
    int rc = -1;
    if (fd >= 0) {
        char chunk[4096];
        int n = snprintf(chunk, sizeof chunk, "%zx\r\n%s\n\r\n", strlen(line) + 1, line);
        send_all(fd, chunk, (size_t)n);
        rc = 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

double fake_stream_wait_closed(fake_server *f, int n, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        double at = n < f->nstreams ? f->stream_closed_at[n] : 0;
        pthread_mutex_unlock(&f->mu);
        if (at > 0) return at;
        if (now_ms() > deadline) return -1;
        sleep_ms(2);
    }
}

void fake_stream_close(fake_server *f, int n) {
    pthread_mutex_lock(&f->mu);
    if (n < f->nstreams && f->stream_fds[n] >= 0) shutdown(f->stream_fds[n], SHUT_RDWR);
    pthread_mutex_unlock(&f->mu);
}

void fake_stream_set_greeting(fake_server *f, const char *line) {
    pthread_mutex_lock(&f->mu);
    snprintf(f->greeting, sizeof f->greeting, "%s", line);
    pthread_mutex_unlock(&f->mu);
}
