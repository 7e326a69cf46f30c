/* Worker of the chaos checker (tests/chaos/chaos_driver.py).
 *
 * Loops: acquire the lock, run a critical section that writes the hold's
 * fencing token to a fencing "storage" (rejects a token lower than the highest
 * one accepted so far), release; until SIGTERM or --count holds. SIGUSR1
 * makes the next critical section a long one (--long-cs-ms, default TTL/2 to
 * 2 TTL), so the driver can aim a fault at a hold that needs renewals.
 *
 * Storage: DIR/fence holds the highest accepted token as 20 zero-padded
 * digits, updated under flock(LOCK_EX) with one pwrite, so a SIGKILLed
 * writer leaves either the old or the new value and the kernel drops its lock.
 *
 * Log: DIR/w-<pid>.log, append-only; every record is one line written with
 * one write(2) on an O_APPEND descriptor, so a SIGKILLed worker leaves a
 * readable log (at worst without the records it had not written). Times are
 * CLOCK_MONOTONIC nanoseconds (the driver's time.monotonic_ns() clock).
 *   S <pid> <t> <owner>                 worker started
 *   C <seq> <t>                         acquire called
 *   X <seq> <t> <rc>                    acquire failed with rc
 *   A <seq> <t> <token> <ms>            acquired: critical section begins, planned to last ms
 *   W <seq> <t> <token> <ok> <max>      storage write: ok 1 accepted / 0 rejected; max before it
 *   L <seq> <t> <token> <phase>         on_lost ran (on the library's thread) during hold seq
 *                                       (token: the last one acquired), in phase 1 (critical
 *                                       section), 2 (releasing) or 0 (not holding: between a
 *                                       release and the next acquisition, i.e. late)
 *   E <seq> <t> <token> <lost> <held>   critical section ends: on_lost seen, mp_lock_is_held
 *   R <seq> <t> <token> <rc>            mp_lock_release returned rc
 *   Q <pid> <t>                         clean exit
 */
#define _GNU_SOURCE
#include <metaparticle.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static int fence_fd = -1;
static atomic_int stopping;
static atomic_int main_done;
static atomic_int long_next;
static atomic_int lost_flag;
static atomic_uint_fast64_t current_seq;
static atomic_uint_fast64_t current_token;
static atomic_int phase;  /* see the L record */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One record = one write(2), so records never interleave or split. */
static void record(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w;
    do {
        w = write(log_fd, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
}

static void die(const char *what) {
    fprintf(stderr, "chaos_worker: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* The fencing storage: accept token if it is not lower than the highest
 * accepted so far. Returns 1 accepted, 0 rejected; *max_before gets the
 * highest accepted token before this write. */
static int fence_write(uint64_t token, uint64_t *max_before) {
    while (flock(fence_fd, LOCK_EX) != 0) {
        if (errno != EINTR) die("flock fence");
    }
    char buf[32] = {0};
    ssize_t r = pread(fence_fd, buf, 20, 0);
    uint64_t max = r > 0 ? strtoull(buf, NULL, 10) : 0;
    int ok = token >= max;
    if (ok && token > max) {
        char out[32];
        snprintf(out, sizeof out, "%020" PRIu64, token);
        if (pwrite(fence_fd, out, 20, 0) != 20) die("write fence");
    }
    flock(fence_fd, LOCK_UN);
    *max_before = max;
    return ok;
}

static void on_lost(mp_lock *lock, void *ud) {
    (void)lock;
    (void)ud;
    atomic_store(&lost_flag, 1);
    record("L %" PRIu64 " %" PRIu64 " %" PRIu64 " %d", (uint64_t)atomic_load(&current_seq), now_ns(),
           (uint64_t)atomic_load(&current_token), atomic_load(&phase));
}

struct stopper {
    mp_lock *lock;
    sigset_t set;
};

/* SIGUSR1: the next critical section is long. SIGTERM/SIGINT: stop after the
 * current hold; a waiting acquire is canceled (repeatedly: a cancel is not
 * remembered for an acquire not yet started). Signals are taken here with
 * sigwait, never by a handler, so no library call is interrupted (EINTR). */
static void *stop_on_signal(void *arg) {
    struct stopper *s = arg;
    int sig;
    for (;;) {
        sigwait(&s->set, &sig);
        if (sig != SIGUSR1) break;
        atomic_store(&long_next, 1);
    }
    atomic_store(&stopping, 1);
    while (!atomic_load(&main_done)) {
        mp_lock_cancel(s->lock);
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    return NULL;
}

static void sleep_ms(unsigned ms) {
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&d, &d) != 0 && errno == EINTR) {
    }
}

static unsigned rand_between(unsigned lo, unsigned hi) {
    return hi <= lo ? lo : lo + (unsigned)(random() % (hi - lo + 1));
}

static void usage(void) {
    fprintf(stderr,
            "usage: chaos_worker --url URL --lock NAME --dir DIR [--ttl SECONDS] [--cs-ms MIN:MAX]\n"
            "                    [--gap-ms MIN:MAX] [--long-cs-ms MIN:MAX] [--count HOLDS]\n"
            "Loops acquire / fenced critical section / release on lock NAME through the sidecar at URL,\n"
            "logging to DIR/w-<pid>.log and fencing with DIR/fence, until SIGTERM or HOLDS holds.\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *url = NULL, *name = NULL, *dir = NULL;
    unsigned ttl = 3, cs_min = 5, cs_max = 40, gap_min = 0, gap_max = 10, long_min = 0, long_max = 0;
    long count = -1;
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},   {"lock", required_argument, NULL, 'l'},
        {"dir", required_argument, NULL, 'd'},   {"ttl", required_argument, NULL, 't'},
        {"cs-ms", required_argument, NULL, 'c'}, {"gap-ms", required_argument, NULL, 'g'},
        {"long-cs-ms", required_argument, NULL, 'L'}, {"count", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'l': name = optarg; break;
        case 'd': dir = optarg; break;
        case 't': ttl = (unsigned)atoi(optarg); break;
        case 'c':
            if (sscanf(optarg, "%u:%u", &cs_min, &cs_max) != 2) usage();
            break;
        case 'g':
            if (sscanf(optarg, "%u:%u", &gap_min, &gap_max) != 2) usage();
            break;
        case 'L':
            if (sscanf(optarg, "%u:%u", &long_min, &long_max) != 2) usage();
            break;
        case 'n': count = atol(optarg); break;
        default: usage();
        }
    }
    if (!url || !name || !dir) usage();
    if (long_max == 0) {
        long_min = ttl * 500;
        long_max = ttl * 2000;
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/w-%d.log", dir, (int)getpid());
    log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) die(path);
    snprintf(path, sizeof path, "%s/fence", dir);
    fence_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fence_fd < 0) die(path);
    srandom((unsigned)(getpid() ^ now_ns()));

    /* Block the stop signals in every thread (the library's too), so only
     * stop_on_signal receives them. */
    struct stopper stopper;
    sigemptyset(&stopper.set);
    sigaddset(&stopper.set, SIGTERM);
    sigaddset(&stopper.set, SIGINT);
    sigaddset(&stopper.set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stopper.set, NULL);

    mp_lock_options o = MP_LOCK_OPTIONS_INIT;
    o.sidecar_url = url;
    o.ttl_seconds = ttl;
    o.on_lost = on_lost;
    mp_lock *lock;
    if (mp_lock_create(&lock, name, &o) != MP_OK) {
        fprintf(stderr, "chaos_worker: mp_lock_create: %s\n", mp_error_last());
        return 2;
    }
    record("S %d %" PRIu64 " %s", (int)getpid(), now_ns(), mp_lock_owner(lock));
    stopper.lock = lock;
    pthread_t stop_thread;
    pthread_create(&stop_thread, NULL, stop_on_signal, &stopper);

    uint64_t seq = 0;
    for (long holds = 0; (count < 0 || holds < count) && !atomic_load(&stopping);) {
        ++seq;
        atomic_store(&current_seq, seq);
        atomic_store(&lost_flag, 0);
        record("C %" PRIu64 " %" PRIu64, seq, now_ns());
        int rc = mp_lock_acquire(lock, (int)(ttl * 3000));
        if (rc != MP_OK) {
            record("X %" PRIu64 " %" PRIu64 " %d", seq, now_ns(), rc);
            if (rc != MP_ETIMEOUT && rc != MP_ECANCELED) sleep_ms(50);  // sidecar down: do not spin
            continue;
        }
        uint64_t token = 0;
        mp_lock_token(lock, &token);
        atomic_store(&lost_flag, 0);  /* a late on_lost of the previous hold must not end this one */
        atomic_store(&current_token, token);
        atomic_store(&phase, 1);
        unsigned cs_ms = atomic_exchange(&long_next, 0) ? rand_between(long_min, long_max)
                                                        : rand_between(cs_min, cs_max);
        record("A %" PRIu64 " %" PRIu64 " %" PRIu64 " %u", seq, now_ns(), token, cs_ms);
        ++holds;

        /* The critical section: a fenced write at the start, then every
         * 10 ms until its time is up or the loss is reported. */
        uint64_t end = now_ns() + (uint64_t)cs_ms * 1000000u;
        for (;;) {
            uint64_t max_before;
            int ok = fence_write(token, &max_before);
            record("W %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %" PRIu64, seq, now_ns(), token, ok, max_before);
            uint64_t now = now_ns();
            if (atomic_load(&lost_flag) || now >= end || atomic_load(&stopping)) break;
            uint64_t left_ms = (end - now) / 1000000u;
            sleep_ms(left_ms < 10 ? (unsigned)left_ms + 1 : 10);
        }
        int held = 0;
        mp_lock_is_held(lock, &held);
        record("E %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %d", seq, now_ns(), token, atomic_load(&lost_flag), held);
        atomic_store(&phase, 2);
        rc = mp_lock_release(lock);
        atomic_store(&phase, 0);
        record("R %" PRIu64 " %" PRIu64 " %" PRIu64 " %d", seq, now_ns(), token, rc);
        sleep_ms(rand_between(gap_min, gap_max));
    }
    /* The stopper must be done with the handle before it is freed; wake its
     * sigwait if no signal came (--count reached). */
    atomic_store(&main_done, 1);
    if (!atomic_load(&stopping)) pthread_kill(stop_thread, SIGTERM);
    pthread_join(stop_thread, NULL);
    mp_lock_free(lock);
    record("Q %d %" PRIu64, (int)getpid(), now_ns());
    return 0;
}
