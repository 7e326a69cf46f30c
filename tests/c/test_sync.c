/* CMocka tests of the Sync C API against a real mp-sidecar (memory backend). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <metaparticle.h>

#include "harness.h"

static sidecar_proc g_sidecar;
static const char *g_holder_bin;

/* Each test uses its own lock names, so one sidecar serves the suite except
 * where a test kills or pauses it (those start their own). */
static int setup_suite(void **state) {
    (void)state;
    g_holder_bin = getenv("MP_LOCK_HOLDER_BIN");
    if (!g_holder_bin) return -1;
    if (sidecar_start(&g_sidecar, 0, NULL) != 0) return -1;
    harness_untrack(g_sidecar.pid);
    return 0;
}

static int teardown_suite(void **state) {
    (void)state;
    sidecar_kill(&g_sidecar, SIGTERM);
    harness_kill_all();
    return 0;
}

/* After each test: kill what a failed test left behind (the suite's shared
 * sidecar is not tracked). */
static int teardown_test(void **state) {
    (void)state;
    harness_kill_all();
    return 0;
}

static mp_lock *new_lock(const char *url, const char *name, const char *owner, unsigned ttl, mp_lock_cb on_lost,
                         void *ud) {
    mp_lock_options o = MP_LOCK_OPTIONS_INIT;
    o.sidecar_url = url;
    o.owner = owner;
    o.ttl_seconds = ttl;
    o.on_lost = on_lost;
    o.user_data = ud;
    mp_lock *l = NULL;
    assert_int_equal(mp_lock_create(&l, name, &o), MP_OK);
    assert_non_null(l);
    return l;
}

/* ---- bad arguments ------------------------------------------------------ */

static void test_bad_arguments(void **state) {
    (void)state;
    mp_lock *l = NULL;
    assert_int_equal(mp_lock_create(NULL, "x", NULL), MP_EINVAL);
    assert_int_equal(mp_lock_create(&l, NULL, NULL), MP_EINVAL);
    const char *bad[] = {"", "Upper", "has space", "a..b", "-lead", "trail-", "under_score", "x/y"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(mp_lock_create(&l, bad[i], NULL), MP_EINVAL);
        assert_null(l);
        assert_true(strlen(mp_error_last()) > 0);
        assert_int_equal(mp_error_last_code(), MP_EINVAL);
    }
    char longname[300];
    memset(longname, 'a', 254);
    longname[254] = 0;
    assert_int_equal(mp_lock_create(&l, longname, NULL), MP_EINVAL);
    assert_non_null(strstr(mp_error_last(), "253"));

    mp_lock_options o = MP_LOCK_OPTIONS_INIT;
    o.ttl_seconds = 1;
    assert_int_equal(mp_lock_create(&l, "ok", &o), MP_EINVAL);
    assert_non_null(strstr(mp_error_last(), "ttl_seconds"));
    o = (mp_lock_options)MP_LOCK_OPTIONS_INIT;
    o.version = 99;
    assert_int_equal(mp_lock_create(&l, "ok", &o), MP_EVERSION);

    assert_int_equal(mp_lock_acquire(NULL, 0), MP_EINVAL);
    assert_int_equal(mp_lock_release(NULL), MP_EINVAL);
    mp_lock_free(NULL); /* no-op */

    mp_election *e = NULL;
    assert_int_equal(mp_election_create(&e, "Bad Name", NULL), MP_EINVAL);
    assert_null(e);
    assert_int_equal(mp_election_run(NULL), MP_EINVAL);
    assert_string_equal(mp_error_name(MP_ETIMEOUT), "MP_ETIMEOUT");
}

static void test_sidecar_unreachable(void **state) {
    (void)state;
    /* Port 1 on loopback: nothing listens there. */
    mp_lock *l = new_lock("http://127.0.0.1:1", "unreachable", NULL, 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(l, 1000), MP_ESIDECAR);
    assert_non_null(strstr(mp_error_last(), "http://127.0.0.1:1"));
    assert_non_null(strstr(mp_error_last(), "mp-sidecar"));
    int held = 1;
    assert_int_equal(mp_lock_is_held(l, &held), MP_OK);
    assert_int_equal(held, 0);
    mp_lock_free(l);
}

static void test_env_variable_names_sidecar(void **state) {
    (void)state;
    setenv("METAPARTICLE_SIDECAR", g_sidecar.url, 1);
    mp_lock *l = new_lock(NULL, "from-env", NULL, 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    mp_lock_free(l);
    unsetenv("METAPARTICLE_SIDECAR");
}

/* ---- acquire / release / tokens ---------------------------------------- */

static void test_acquire_release_token(void **state) {
    (void)state;
    mp_lock *l = new_lock(g_sidecar.url, "basic", "me/1", 0, NULL, NULL);
    uint64_t t1 = 0, t2 = 0;
    assert_int_equal(mp_lock_token(l, &t1), MP_ENOTHELD);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    int held = 0;
    mp_lock_is_held(l, &held);
    assert_int_equal(held, 1);
    assert_int_equal(mp_lock_token(l, &t1), MP_OK);
    assert_true(t1 >= 1);
    assert_int_equal(mp_lock_acquire(l, 0), MP_ESTATE); /* already held */
    assert_int_equal(mp_lock_release(l), MP_OK);
    assert_int_equal(mp_lock_release(l), MP_ENOTHELD);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    assert_int_equal(mp_lock_token(l, &t2), MP_OK);
    assert_true(t2 > t1);
    assert_string_equal(mp_lock_name(l), "basic");
    assert_string_equal(mp_lock_owner(l), "me/1");
    mp_lock_free(l); /* releases */

    mp_lock *other = new_lock(g_sidecar.url, "basic", "other/2", 0, NULL, NULL);
    assert_int_equal(mp_lock_try_acquire(other), MP_OK); /* free() released it */
    mp_lock_free(other);
}

static void test_try_acquire_busy_and_timeout(void **state) {
    (void)state;
    mp_lock *a = new_lock(g_sidecar.url, "busy", "a/1", 0, NULL, NULL);
    mp_lock *b = new_lock(g_sidecar.url, "busy", "b/2", 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
    assert_int_equal(mp_lock_try_acquire(b), MP_EBUSY);
    double t0 = now_ms();
    assert_int_equal(mp_lock_acquire(b, 300), MP_ETIMEOUT);
    double waited = now_ms() - t0;
    assert_true(waited >= 250); /* it did wait for the timeout */
    assert_non_null(strstr(mp_error_last(), "busy"));
    mp_lock_free(a);
    mp_lock_free(b);
}

/* The default default owner is <host>/<pid>, so two processes differ but a
 * second handle in this process with the same owner would renew, not block. */
static void test_default_owner_is_host_and_pid(void **state) {
    (void)state;
    mp_lock *l = new_lock(g_sidecar.url, "owner-default", NULL, 0, NULL, NULL);
    char pid[32];
    snprintf(pid, sizeof pid, "/%ld", (long)getpid());
    const char *owner = mp_lock_owner(l);
    assert_true(strlen(owner) > strlen(pid));
    assert_string_equal(owner + strlen(owner) - strlen(pid), pid);
    mp_lock_free(l);
}

struct waiter {
    mp_lock *lock;
    int rc;
    double acquired_at;
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    w->rc = mp_lock_acquire(w->lock, 20000);
    w->acquired_at = now_ms();
    return NULL;
}

static void test_release_hands_over_to_waiter(void **state) {
    (void)state;
    mp_lock *a = new_lock(g_sidecar.url, "handover", "a/1", 0, NULL, NULL);
    mp_lock *b = new_lock(g_sidecar.url, "handover", "b/2", 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
    uint64_t ta, tb;
    mp_lock_token(a, &ta);
    struct waiter w = {b, -100, 0};
    pthread_t t;
    pthread_create(&t, NULL, waiter_main, &w);
    sleep_ms(300);
    double released = now_ms();
    assert_int_equal(mp_lock_release(a), MP_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, MP_OK);
    /* Far less than the 15 s TTL: the release woke the waiter. */
    assert_true(w.acquired_at - released < 5000);
    assert_int_equal(mp_lock_token(b, &tb), MP_OK);
    assert_true(tb > ta);
    mp_lock_free(a);
    mp_lock_free(b);
}

struct canceler {
    mp_lock *lock;
    atomic_int done;
    int rc;
};

/* Blocks in mp_lock_acquire (no timeout) until canceled; sets done. */
static void *waiter_in_thread(void *arg) {
    struct canceler *c = arg;
    c->rc = mp_lock_acquire(c->lock, -1);
    atomic_store(&c->done, 1);
    return NULL;
}

static void *cancel_after(void *arg) {
    sleep_ms(300);
    mp_lock_cancel((mp_lock *)arg);
    return NULL;
}

static void test_cancel_blocking_acquire(void **state) {
    (void)state;
    mp_lock *a = new_lock(g_sidecar.url, "cancel", "a/1", 0, NULL, NULL);
    mp_lock *b = new_lock(g_sidecar.url, "cancel", "b/2", 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
    pthread_t t;
    pthread_create(&t, NULL, cancel_after, b);
    assert_int_equal(mp_lock_acquire(b, 20000), MP_ECANCELED);
    pthread_join(t, NULL);
    int held = 1;
    mp_lock_is_held(b, &held);
    assert_int_equal(held, 0);
    mp_lock_free(a);
    mp_lock_free(b);
}

/* A child process started while a long-poll is open must not keep its
 * connection alive: after a cancel, the sidecar has to see the waiter hang
 * up, or it grants the lock to nobody when the holder releases. (libcurl's
 * sockets are inherited across fork/exec unless made close-on-exec; a
 * binding's subprocess call is enough to trigger it.) */
static void test_child_process_does_not_inherit_a_wait(void **state) {
    (void)state;
    mp_lock *a = new_lock(g_sidecar.url, "inherit", "a/1", 0, NULL, NULL);
    mp_lock *b = new_lock(g_sidecar.url, "inherit", "b/2", 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
    struct canceler c = {b, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, waiter_in_thread, &c);
    sleep_ms(300); /* b's long-poll is now open */
    pid_t child;
    char *argv[] = {"sleep", "30", NULL};
    assert_int_equal(posix_spawnp(&child, "sleep", NULL, NULL, argv, environ), 0);
    while (!atomic_load(&c.done)) {
        mp_lock_cancel(b);
        sleep_ms(20);
    }
    pthread_join(t, NULL);
    int released = mp_lock_release(a);
    int retaken = mp_lock_try_acquire(a);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(c.rc, MP_ECANCELED);
    assert_int_equal(released, MP_OK);
    assert_int_equal(retaken, MP_OK); /* not handed to b, which gave up */
    mp_lock_free(a);
    mp_lock_free(b);
}

/* ---- async (JavaScript-shaped) lock ------------------------------------ */

struct flag {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
    mp_lock *seen;
};

static void flag_init(struct flag *f) {
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->count = 0;
    f->seen = NULL;
}

static void flag_raise(mp_lock *l, void *ud) {
    struct flag *f = ud;
    pthread_mutex_lock(&f->mu);
    f->count++;
    f->seen = l;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int flag_wait(struct flag *f, int n, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    pthread_mutex_lock(&f->mu);
    while (f->count < n && now_ms() < deadline) {
        pthread_mutex_unlock(&f->mu);
        sleep_ms(5);
        pthread_mutex_lock(&f->mu);
    }
    int ok = f->count >= n;
    pthread_mutex_unlock(&f->mu);
    return ok;
}

static void test_async_lock_calls_on_acquired(void **state) {
    (void)state;
    mp_lock *a = new_lock(g_sidecar.url, "async", "a/1", 0, NULL, NULL);
    mp_lock *b = new_lock(g_sidecar.url, "async", "b/2", 0, NULL, NULL);
    struct flag fa, fb;
    flag_init(&fa);
    flag_init(&fb);
    assert_int_equal(mp_lock_lock_async(a, flag_raise, &fa), MP_OK);
    assert_true(flag_wait(&fa, 1, 5000));
    assert_ptr_equal(fa.seen, a);
    assert_int_equal(mp_lock_lock_async(b, flag_raise, &fb), MP_OK);
    sleep_ms(300);
    assert_int_equal(fb.count, 0); /* a still holds it */
    assert_int_equal(mp_lock_release(a), MP_OK);
    assert_true(flag_wait(&fb, 1, 5000));
    int held = 0;
    mp_lock_is_held(b, &held);
    assert_int_equal(held, 1);
    /* release() of a pending async lock cancels it */
    assert_int_equal(mp_lock_lock_async(a, flag_raise, &fa), MP_OK);
    sleep_ms(200);
    assert_int_equal(mp_lock_release(a), MP_OK);
    assert_int_equal(mp_lock_release(b), MP_OK);
    sleep_ms(300);
    assert_int_equal(fa.count, 1); /* the canceled attempt never fired */
    /* Regression: release right after lock_async, before the worker starts. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(mp_lock_lock_async(a, flag_raise, &fa), MP_OK);
        assert_int_equal(mp_lock_release(a), MP_OK);
    }
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK); /* the handle still works */
    assert_int_equal(mp_lock_release(a), MP_OK);
    mp_lock_free(a);
    mp_lock_free(b);
}

/* ---- contention between processes -------------------------------------- */

static void test_contention_between_processes(void **state) {
    (void)state;
    child_proc c;
    char *argv[] = {(char *)g_holder_bin, g_sidecar.url, (char *)"xproc", (char *)"hold", (char *)"3", NULL};
    assert_int_equal(child_start(&c, argv), 0);
    char line[256];
    assert_int_equal(child_read_line(&c, line, sizeof line, 10000), 0);
    assert_non_null(strstr(line, "ACQUIRED"));
    uint64_t child_token = strtoull(line + 9, NULL, 10);

    mp_lock *l = new_lock(g_sidecar.url, "xproc", NULL, 3, NULL, NULL);
    assert_int_equal(mp_lock_try_acquire(l), MP_EBUSY);
    /* The child renews (TTL 3 s): it still holds it after several TTL/3 periods. */
    assert_int_equal(mp_lock_acquire(l, 3500), MP_ETIMEOUT);
    /* SIGKILL: no release; the sidecar lets the record expire after the TTL. */
    kill(c.pid, SIGKILL);
    double killed = now_ms();
    assert_int_equal(mp_lock_acquire(l, 15000), MP_OK);
    double failover = now_ms() - killed;
    assert_true(failover < 3000 + 2000);
    uint64_t t;
    mp_lock_token(l, &t);
    assert_true(t > child_token);
    /* Regression: a hold granted at the end of a long wait (longer than the
     * renew deadline) stays held; it must not be reported lost at once. */
    sleep_ms(2500);
    int held = 0;
    mp_lock_is_held(l, &held);
    assert_int_equal(held, 1);
    uint64_t t2;
    assert_int_equal(mp_lock_token(l, &t2), MP_OK);
    assert_int_equal(t2, t);
    child_wait(&c, 5000);
    mp_lock_free(l);
}

/* ---- loss detection ----------------------------------------------------- */

struct loss {
    struct flag f;
    double lost_at;
};

static void on_lost_record(mp_lock *l, void *ud) {
    struct loss *x = ud;
    x->lost_at = now_ms();
    flag_raise(l, &x->f);
}

static void check_loss(int sig) {
    sidecar_proc s;
    assert_int_equal(sidecar_start(&s, 0, NULL), 0);
    struct loss x;
    flag_init(&x.f);
    x.lost_at = 0;
    mp_lock *l = new_lock(s.url, "lossy", NULL, 3, on_lost_record, &x);
    double t0 = now_ms();
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    double acquired = now_ms();
    kill(s.pid, sig);
    assert_true(flag_wait(&x.f, 1, 10000));
    /* Safety: the loss is known before the TTL (3 s) from the acquisition
     * could have expired for anyone else. */
    assert_true(x.lost_at - t0 < 3000);
    assert_true(x.lost_at > acquired);
    int held = 1;
    mp_lock_is_held(l, &held);
    assert_int_equal(held, 0);
    assert_int_equal(mp_lock_release(l), MP_ENOTHELD);
    if (sig == SIGSTOP) kill(s.pid, SIGCONT);
    mp_lock_free(l);
    sidecar_kill(&s, SIGKILL);
}

static void test_loss_when_sidecar_killed(void **state) {
    (void)state;
    check_loss(SIGKILL);
}

static void test_loss_when_sidecar_paused(void **state) {
    (void)state;
    check_loss(SIGSTOP);
}

static void test_loss_without_handler_exits(void **state) {
    (void)state;
    sidecar_proc s;
    assert_int_equal(sidecar_start(&s, 0, NULL), 0);
    child_proc c;
    char *argv[] = {(char *)g_holder_bin, s.url, (char *)"nohandler", (char *)"hold-nohandler", (char *)"3", NULL};
    assert_int_equal(child_start(&c, argv), 0);
    char line[256];
    assert_int_equal(child_read_line(&c, line, sizeof line, 10000), 0);
    assert_non_null(strstr(line, "ACQUIRED"));
    sidecar_kill(&s, SIGKILL);
    int status = child_wait(&c, 10000);
    assert_true(status != -1);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
}

/* ---- elections ---------------------------------------------------------- */

struct elect_state {
    atomic_int leader_count;
    atomic_int lost_count;
};

static void e_leader(mp_election *e, void *ud) {
    (void)e;
    atomic_fetch_add(&((struct elect_state *)ud)->leader_count, 1);
}
static void e_lost(mp_election *e, void *ud) {
    (void)e;
    atomic_fetch_add(&((struct elect_state *)ud)->lost_count, 1);
}

static void *run_election(void *arg) {
    mp_election_run((mp_election *)arg);
    return NULL;
}

static mp_election *new_election(const char *url, const char *name, const char *id, unsigned ttl,
                                 struct elect_state *st) {
    mp_election_options o = MP_ELECTION_OPTIONS_INIT;
    o.sidecar_url = url;
    o.identity = id;
    o.ttl_seconds = ttl;
    o.on_leader = e_leader;
    o.on_lost = e_lost;
    o.user_data = st;
    mp_election *e = NULL;
    assert_int_equal(mp_election_create(&e, name, &o), MP_OK);
    return e;
}

static int wait_leader(mp_election *e, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    int is = 0;
    while (now_ms() < deadline) {
        mp_election_is_leader(e, &is);
        if (is) return 1;
        sleep_ms(10);
    }
    return 0;
}

static void test_election_stop_hands_over(void **state) {
    (void)state;
    struct elect_state s1 = {0, 0}, s2 = {0, 0};
    mp_election *e1 = new_election(g_sidecar.url, "elect-stop", "one", 0, &s1);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, run_election, e1);
    assert_true(wait_leader(e1, 5000));
    assert_int_equal(mp_election_run(e1), MP_ESTATE);
    mp_election *e2 = new_election(g_sidecar.url, "elect-stop", "two", 0, &s2);
    pthread_create(&t2, NULL, run_election, e2);
    sleep_ms(300);
    int is = 1;
    mp_election_is_leader(e2, &is);
    assert_int_equal(is, 0);
    char *who = NULL;
    assert_int_equal(mp_election_leader(e2, &who), MP_OK);
    assert_non_null(who);
    assert_string_equal(who, "one");
    mp_free(who);
    double stopped = now_ms();
    assert_int_equal(mp_election_stop(e1), MP_OK);
    pthread_join(t1, NULL);
    assert_true(wait_leader(e2, 5000));
    assert_true(now_ms() - stopped < 5000); /* a stop releases at once; no TTL wait */
    assert_int_equal(atomic_load(&s1.leader_count), 1);
    assert_int_equal(atomic_load(&s1.lost_count), 0); /* stop is not a loss */
    assert_int_equal(atomic_load(&s2.leader_count), 1);
    assert_int_equal(mp_election_leader(e2, &who), MP_OK);
    assert_string_equal(who, "two");
    mp_free(who);
    mp_election_stop(e2);
    pthread_join(t2, NULL);
    mp_election_free(e1);
    mp_election_free(e2);
}

static void test_election_failover_after_kill(void **state) {
    (void)state;
    child_proc c;
    char *argv[] = {(char *)g_holder_bin, g_sidecar.url, (char *)"elect-kill", (char *)"elect", (char *)"3",
                    (char *)"child", NULL};
    assert_int_equal(child_start(&c, argv), 0);
    char line[64];
    assert_int_equal(child_read_line(&c, line, sizeof line, 10000), 0);
    assert_string_equal(line, "LEADER");
    struct elect_state st = {0, 0};
    mp_election *e = new_election(g_sidecar.url, "elect-kill", "parent", 3, &st);
    pthread_t t;
    pthread_create(&t, NULL, run_election, e);
    sleep_ms(500);
    int is = 1;
    mp_election_is_leader(e, &is);
    assert_int_equal(is, 0);
    kill(c.pid, SIGKILL);
    double killed = now_ms();
    assert_true(wait_leader(e, 15000));
    assert_true(now_ms() - killed < 3000 + 2000);
    sleep_ms(2500); /* longer than the renew deadline: still leading, no loss */
    mp_election_is_leader(e, &is);
    assert_int_equal(is, 1);
    assert_int_equal(atomic_load(&st.lost_count), 0);
    assert_int_equal(atomic_load(&st.leader_count), 1);
    child_wait(&c, 5000);
    mp_election_stop(e);
    pthread_join(t, NULL);
    mp_election_free(e);
}

/* After a loss the election contends again (the original never did). */
static void test_election_contends_again_after_loss(void **state) {
    (void)state;
    sidecar_proc s;
    assert_int_equal(sidecar_start(&s, 0, NULL), 0);
    int port = s.port;
    struct elect_state st = {0, 0};
    mp_election *e = new_election(s.url, "elect-again", "phoenix", 3, &st);
    pthread_t t;
    pthread_create(&t, NULL, run_election, e);
    assert_true(wait_leader(e, 5000));
    sidecar_kill(&s, SIGKILL);
    double deadline = now_ms() + 10000;
    while (atomic_load(&st.lost_count) < 1 && now_ms() < deadline) sleep_ms(10);
    assert_int_equal(atomic_load(&st.lost_count), 1);
    /* A new sidecar on the same address: the election wins again. */
    sidecar_proc s2;
    int started = -1;
    for (int i = 0; i < 50 && started != 0; i++) {
        started = sidecar_start(&s2, port, NULL);
        if (started != 0) sleep_ms(100);
    }
    assert_int_equal(started, 0);
    deadline = now_ms() + 10000;
    while (atomic_load(&st.leader_count) < 2 && now_ms() < deadline) sleep_ms(10);
    assert_int_equal(atomic_load(&st.leader_count), 2);
    mp_election_stop(e);
    pthread_join(t, NULL);
    mp_election_free(e);
    sidecar_kill(&s2, SIGTERM);
}

/* Repeating a cancel until the acquire returns (the bindings' pattern)
 * leaves no stale state: the next acquire waits normally. */

static void *cancel_until_done(void *arg) {
    struct canceler *c = arg;
    while (!atomic_load(&c->done)) {
        mp_lock_cancel(c->lock);
        sleep_ms(20);
    }
    return NULL;
}

static void test_repeated_cancel_leaves_no_stale_state(void **state) {
    (void)state;
    mp_lock *a = new_lock(g_sidecar.url, "cancel-repeat", "a/1", 0, NULL, NULL);
    mp_lock *b = new_lock(g_sidecar.url, "cancel-repeat", "b/2", 0, NULL, NULL);
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
    for (int i = 0; i < 5; i++) {
        struct canceler c = {b, 0, 0};
        pthread_t t;
        pthread_create(&t, NULL, cancel_until_done, &c);
        int rc = mp_lock_acquire(b, 20000);
        atomic_store(&c.done, 1);
        pthread_join(t, NULL);
        assert_int_equal(rc, MP_ECANCELED);
    }
    assert_int_equal(mp_lock_acquire(b, 300), MP_ETIMEOUT); /* waits normally */
    assert_int_equal(mp_lock_release(a), MP_OK);
    assert_int_equal(mp_lock_acquire(b, 2000), MP_OK);
    mp_lock_free(a);
    mp_lock_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_arguments, teardown_test),
        cmocka_unit_test_teardown(test_sidecar_unreachable, teardown_test),
        cmocka_unit_test_teardown(test_env_variable_names_sidecar, teardown_test),
        cmocka_unit_test_teardown(test_acquire_release_token, teardown_test),
        cmocka_unit_test_teardown(test_try_acquire_busy_and_timeout, teardown_test),
        cmocka_unit_test_teardown(test_default_owner_is_host_and_pid, teardown_test),
        cmocka_unit_test_teardown(test_release_hands_over_to_waiter, teardown_test),
        cmocka_unit_test_teardown(test_cancel_blocking_acquire, teardown_test),
        cmocka_unit_test_teardown(test_child_process_does_not_inherit_a_wait, teardown_test),
        cmocka_unit_test_teardown(test_async_lock_calls_on_acquired, teardown_test),
        cmocka_unit_test_teardown(test_contention_between_processes, teardown_test),
        cmocka_unit_test_teardown(test_loss_when_sidecar_killed, teardown_test),
        cmocka_unit_test_teardown(test_loss_when_sidecar_paused, teardown_test),
        cmocka_unit_test_teardown(test_loss_without_handler_exits, teardown_test),
        cmocka_unit_test_teardown(test_election_stop_hands_over, teardown_test),
        cmocka_unit_test_teardown(test_election_failover_after_kill, teardown_test),
        cmocka_unit_test_teardown(test_election_contends_again_after_loss, teardown_test),
        cmocka_unit_test_teardown(test_repeated_cancel_leaves_no_stale_state, teardown_test),
    };
    return cmocka_run_group_tests_name("sync_c_api", tests, setup_suite, teardown_suite);
}
