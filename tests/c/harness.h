/* Test harness: start/stop a real mp-sidecar and helper processes. */
#ifndef MP_TEST_HARNESS_H
#define MP_TEST_HARNESS_H

#include <stdio.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char url[64];
} sidecar_proc;

/* Start mp-sidecar (path from $MP_SIDECAR_BIN) on 127.0.0.1; port 0 = random.
 * Extra arguments end with NULL. Returns 0 on success. */
int sidecar_start(sidecar_proc *s, int port, ...);
void sidecar_kill(sidecar_proc *s, int sig); /* signal and reap (for SIGKILL/SIGTERM) */
int sidecar_wait_exit(sidecar_proc *s, int timeout_ms); /* exit status, or -1 */

typedef struct {
    pid_t pid;
    FILE *out;  /* child's stdout */
    int in_fd;  /* child's stdin (close it to tell the child to finish) */
} child_proc;

/* Run `argv` with pipes on stdin/stdout. */
int child_start(child_proc *c, char *const argv[]);
/* Read one line from the child's stdout within timeout_ms; 0 on success. */
int child_read_line(child_proc *c, char *buf, size_t len, int timeout_ms);
/* Wait for exit; returns the raw wait status or -1 on timeout. */
int child_wait(child_proc *c, int timeout_ms);
void child_kill(child_proc *c);

/* Kill (SIGKILL) and reap every process this harness started that is still
 * running: a failed assertion jumps out of a test before its own cleanup. */
void harness_kill_all(void);
/* Stop tracking `pid` (a process meant to outlive single tests). */
void harness_untrack(pid_t pid);

double now_ms(void);
void sleep_ms(int ms);

#endif
