#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_CHILDREN 64
static pid_t g_children[MAX_CHILDREN];

static void track(pid_t pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] == 0) {
            g_children[i] = pid;
            return;
        }
}

void harness_untrack(pid_t pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] == pid) g_children[i] = 0;
}

void harness_kill_all(void) {
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t pid = g_children[i];
        if (pid <= 0) continue;
        g_children[i] = 0;
        if (waitpid(pid, NULL, WNOHANG) == 0) {
            kill(pid, SIGCONT); /* a paused sidecar must be able to die */
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
}

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int child_start(child_proc *c, char *const argv[]) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    int rc = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    c->in_fd = in[1];
    c->out = fdopen(out[0], "r");
    track(c->pid);
    return 0;
}

int child_read_line(child_proc *c, char *buf, size_t len, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    size_t n = 0;
    int fd = fileno(c->out);
    while (n + 1 < len) {
        int left = (int)(deadline - now_ms());
        if (left <= 0) return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0) continue;
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r <= 0) return -1;
        if (ch == '\n') break;
        buf[n++] = ch;
    }
    buf[n] = 0;
    return 0;
}

int child_wait(child_proc *c, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid) {
            harness_untrack(c->pid);
            c->pid = 0;
            if (c->out) fclose(c->out);
            c->out = NULL;
            if (c->in_fd >= 0) close(c->in_fd);
            c->in_fd = -1;
            return status;
        }
        if (now_ms() > deadline) return -1;
        sleep_ms(10);
    }
}

void child_kill(child_proc *c) {
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        child_wait(c, 5000);
    }
}

int sidecar_start(sidecar_proc *s, int port, ...) {
    const char *bin = getenv("MP_SIDECAR_BIN");
    if (!bin) {
        fprintf(stderr, "MP_SIDECAR_BIN is not set\n");
        return -1;
    }
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)bin;
    argv[argc++] = (char *)"--listen";
    argv[argc++] = listen;
    va_list ap;
    va_start(ap, port);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 30) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    child_proc c;
    if (child_start(&c, argv) != 0) return -1;
    char line[512];
    if (child_read_line(&c, line, sizeof line, 10000) != 0) {
        child_kill(&c);
        return -1;
    }
    const char *p = strstr(line, "http://127.0.0.1:");
    if (!p) {
        fprintf(stderr, "unexpected sidecar output: %s\n", line);
        child_kill(&c);
        return -1;
    }
    s->port = atoi(p + strlen("http://127.0.0.1:"));
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    s->pid = c.pid;
    /* The sidecar's stdout stays open on our side (leaked FILE) so it never
     * gets SIGPIPE; close our copy of its stdin. */
    close(c.in_fd);
    return 0;
}

int sidecar_wait_exit(sidecar_proc *s, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            harness_untrack(s->pid);
            s->pid = 0;
            return status;
        }
        sleep_ms(10);
    }
    return -1;
}

void sidecar_kill(sidecar_proc *s, int sig) {
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    if (sig == SIGKILL || sig == SIGTERM) {
        if (sidecar_wait_exit(s, 10000) < 0) {
            kill(s->pid, SIGKILL);
            sidecar_wait_exit(s, 5000);
        }
    }
}
