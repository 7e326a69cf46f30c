/* CMocka tests of the Sync C API under faults: malformed and hostile sidecar
 * answers (a scripted fake), loss reporting races, clear error codes,
 * deadlines, and the session stream (issues 8 and 9, client side). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <metaparticle.h>

#include "fake_server.h"
#include "harness.h"

static const char *g_holder_bin;

static int setup_suite(void **state) {
    (void)state;
    g_holder_bin = getenv("MP_LOCK_HOLDER_BIN");
    return g_holder_bin && getenv("MP_SIDECAR_BIN") ? 0 : -1;
}

static int teardown_test(void **state) {
    (void)state;
    harness_kill_all();
    return 0;
}

/* ---- a scripted sidecar ------------------------------------------------- */

/* What the fake answers. Defaults (all zero) make a well-behaved sidecar
 * without sessions: PUT grants (token +1 per new hold, kept on renewal),
 * DELETE 200, GET /session 404. */
struct script {
    pthread_mutex_t mu;
    uint64_t token;
    int held;
    int puts;                  /* PUTs seen */
    const char *bad_put_body;  /* answer 200 with this body ... */
    int bad_from_put;          /* ... from the PUT with this index on (0-based) */
    const char *put_special;   /* FAKE_* marker for PUTs from bad_from_put on */
    int put_status;            /* non-zero: answer PUTs (from bad_from_put) with this status and put_status_body */
    const char *put_status_body;
    int delete_status;         /* 0: 200 */
    int sessions;              /* serve GET /session as a stream */
    char last_put_body[1024];
    uint64_t next_token;       /* non-zero: the next grant's token */
};

/* Changes while the fake runs go through its mutex. */
#define SCRIPT_SET(s, stmt)             \
    do {                                \
        pthread_mutex_lock(&(s).mu);    \
        stmt;                           \
        pthread_mutex_unlock(&(s).mu);  \
    } while (0)

static int put_body_has(struct script *s, const char *needle) {
    pthread_mutex_lock(&s->mu);
    int has = strstr(s->last_put_body, needle) != NULL;
    pthread_mutex_unlock(&s->mu);
    return has;
}

static void script_init(struct script *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

/* The value of "key":"..." in a compact JSON text, or "" */
static void json_str(const char *json, const char *key, char *out, size_t len) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    out[0] = 0;
    const char *p = strstr(json, pat);
    if (!p) return;
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < len) out[n++] = *p++;
    out[n] = 0;
}

static const char *scripted(void *ud, int index, const char *method, const char *path, const char *body, char *out,
                            size_t outlen) {
    (void)index;
    struct script *s = ud;
    char json[2048];
    pthread_mutex_lock(&s->mu);
    const char *reply = NULL;
    if (strcmp(method, "GET") == 0 && strcmp(path, "/session") == 0) {
        reply = s->sessions ? FAKE_STREAM : fake_reply(out, outlen, 404, "{\"message\":\"no such path\"}");
    } else if (strcmp(method, "PUT") == 0) {
        int n = s->puts++;
        snprintf(s->last_put_body, sizeof s->last_put_body, "%s", body);
        char owner[256], session[128];
        json_str(body, "owner", owner, sizeof owner);
        json_str(body, "session", session, sizeof session);
        if (n >= s->bad_from_put && s->put_special) {
            reply = s->put_special;
        } else if (n >= s->bad_from_put && s->put_status) {
            reply = fake_reply(out, outlen, s->put_status, s->put_status_body);
        } else if (n >= s->bad_from_put && s->bad_put_body) {
            reply = fake_reply(out, outlen, 200, s->bad_put_body);
        } else {
            if (!s->held) {
                s->token = s->next_token ? s->next_token : s->token + 1;
                s->next_token = 0;
                s->held = 1;
            }
            snprintf(json, sizeof json, "{\"name\":\"x\",\"owner\":\"%s\",\"token\":%" PRIu64 ",\"held\":true%s%s%s}",
                     owner, s->token, session[0] ? ",\"session\":\"" : "", session, session[0] ? "\"" : "");
            reply = fake_reply(out, outlen, 200, json);
        }
    } else if (strcmp(method, "DELETE") == 0) {
        s->held = 0;
        if (s->delete_status == 409)
            reply = fake_reply(out, outlen, 409, "{\"name\":\"x\",\"owner\":\"thief\",\"token\":99,\"held\":true}");
        else if (s->delete_status)
            reply = fake_reply(out, outlen, s->delete_status, "{\"message\":\"no such lock\"}");
        else
            reply = fake_reply(out, outlen, 200, "{\"name\":\"x\",\"owner\":\"\",\"token\":0,\"held\":false}");
    } else {
        reply = fake_reply(out, outlen, 404, "{\"message\":\"no such lock\"}");
    }
    pthread_mutex_unlock(&s->mu);
    return reply;
}

/* ---- helpers ------------------------------------------------------------ */

struct counter {
    atomic_int n;
    _Atomic double first_at; /* set before n counts the first call */
};

static void count_cb(mp_lock *l, void *ud) {
    (void)l;
    struct counter *c = ud;
    double unset = 0;
    atomic_compare_exchange_strong(&c->first_at, &unset, now_ms());
    atomic_fetch_add(&c->n, 1);
}

static int wait_count(struct counter *c, int n, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    while (atomic_load(&c->n) < n && now_ms() < deadline) sleep_ms(2);
    return atomic_load(&c->n) >= n;
}

/* Handles a failed assertion leaves behind keep renewing: give them a
 * handler, so a later loss cannot end the test process. */
static struct counter g_ignored_losses;

static mp_lock *new_lock(const char *url, const char *name, const char *owner, unsigned ttl, mp_lock_cb on_lost,
                         void *ud) {
    if (!on_lost) {
        on_lost = count_cb;
        ud = &g_ignored_losses;
    }
    mp_lock_options o = MP_LOCK_OPTIONS_INIT;
    o.sidecar_url = url;
    o.owner = owner;
    o.ttl_seconds = ttl;
    o.on_lost = on_lost;
    o.user_data = ud;
    mp_lock *l = NULL;
    assert_int_equal(mp_lock_create(&l, name, &o), MP_OK);
    return l;
}

static int is_held(mp_lock *l) {
    int held = -1;
    assert_int_equal(mp_lock_is_held(l, &held), MP_OK);
    return held;
}

/* ---- 1. every answer is validated --------------------------------------- */

static void test_malformed_grants_are_protocol_errors(void **state) {
    (void)state;
    const char *bad[] = {
        "{}",
        "{\"owner\":\"me\",\"token\":\"7\",\"held\":true}",
        "{\"owner\":\"me\",\"token\":null,\"held\":true}",
        "{\"owner\":\"me\",\"token\":1e300,\"held\":true}",
        "{\"owner\":\"me\",\"token\":-5,\"held\":true}",
        "{\"owner\":\"me\",\"token\":0,\"held\":true}",
        "{\"owner\":\"me\",\"token\":2.5,\"held\":true}",
        "{\"owner\":\"me\",\"token\":9223372036854775808,\"held\":true}",
        "{\"owner\":\"someone-else\",\"token\":7,\"held\":true}",
        "{\"token\":7,\"held\":true}",
        "[1,2]",
        "\"me\"",
        "not json",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct script s;
        script_init(&s);
        s.bad_put_body = bad[i];
        fake_server *f = fake_start(scripted, &s);
        assert_non_null(f);
        mp_lock *l = new_lock(fake_url(f), "validated", "me", 3, NULL, NULL);
        int rc = mp_lock_acquire(l, 2000);
        if (rc != MP_EPROTOCOL) fprintf(stderr, "body %s: %s %s\n", bad[i], mp_error_name(rc), mp_error_last());
        assert_int_equal(rc, MP_EPROTOCOL);
        assert_non_null(strstr(mp_error_last(), "validated"));
        assert_int_equal(is_held(l), 0);
        uint64_t t;
        assert_int_equal(mp_lock_token(l, &t), MP_ENOTHELD);
        mp_lock_free(l);
        fake_stop(f);
    }
}

static void test_token_must_not_go_backwards(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.next_token = 10;
    fake_server *f = fake_start(scripted, &s);
    mp_lock *l = new_lock(fake_url(f), "backwards", "me", 3, NULL, NULL);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    uint64_t t = 0;
    assert_int_equal(mp_lock_token(l, &t), MP_OK);
    assert_int_equal(t, 10);
    assert_int_equal(mp_lock_release(l), MP_OK);
    SCRIPT_SET(s, s.next_token = 9); /* a sidecar that forgot its tokens */
    assert_int_equal(mp_lock_acquire(l, 2000), MP_EPROTOCOL);
    assert_non_null(strstr(mp_error_last(), "token"));
    assert_int_equal(is_held(l), 0);
    mp_lock_free(l);
    fake_stop(f);
}

/* A renewal answered 200 naming another owner is a loss, reported at once. */
static void test_renewal_for_another_owner_is_a_loss(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.bad_put_body = "{\"name\":\"x\",\"owner\":\"thief\",\"token\":1,\"held\":true}";
    s.bad_from_put = 1; /* the grant is fine, the first renewal is not */
    fake_server *f = fake_start(scripted, &s);
    struct counter lost = {0, 0};
    mp_lock *l = new_lock(fake_url(f), "renew-thief", "me", 3, count_cb, &lost);
    double t0 = now_ms();
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    /* First renewal after ttl/3 = 1 s. */
    assert_true(wait_count(&lost, 1, 5000));
    assert_true(lost.first_at - t0 < 1800);
    assert_int_equal(is_held(l), 0);
    sleep_ms(1500);
    assert_int_equal(atomic_load(&lost.n), 1);
    assert_int_equal(mp_lock_release(l), MP_ENOTHELD); /* already reported through on_lost */
    mp_lock_free(l);
    fake_stop(f);
}

/* ---- 2. loss reported exactly once --------------------------------------- */

static void test_release_answered_409_is_elost(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    fake_server *f = fake_start(scripted, &s);
    struct counter lost = {0, 0};
    mp_lock *l = new_lock(fake_url(f), "release-409", "me", 15, count_cb, &lost);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    SCRIPT_SET(s, s.delete_status = 409);
    assert_int_equal(mp_lock_release(l), MP_ELOST);
    assert_non_null(strstr(mp_error_last(), "thief"));
    assert_true(wait_count(&lost, 1, 2000));
    assert_int_equal(mp_lock_release(l), MP_ENOTHELD);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    SCRIPT_SET(s, s.delete_status = 404);
    assert_int_equal(mp_lock_release(l), MP_ELOST);
    assert_true(wait_count(&lost, 2, 2000));
    sleep_ms(100);
    assert_int_equal(atomic_load(&lost.n), 2);
    mp_lock_free(l);
    fake_stop(f);
}

/* Renewals that are never answered: is_held turns 0 at the renew deadline
 * (2/3 of the TTL from the grant's send), on_lost follows at once. */
static void test_unanswered_renewals_end_the_hold_by_the_deadline(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.put_special = FAKE_HANG;
    s.bad_from_put = 1;
    fake_server *f = fake_start(scripted, &s);
    struct counter lost = {0, 0};
    mp_lock *l = new_lock(fake_url(f), "renew-hang", "me", 3, count_cb, &lost);
    double t0 = now_ms();
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    double t1 = now_ms();
    /* The grant was sent between t0 and t1: the deadline lies in
     * [t0 + 2000, t1 + 2000]. */
    sleep_ms((int)(t0 + 1900 - now_ms()));
    int held_before = is_held(l);
    if (now_ms() < t0 + 1990) assert_int_equal(held_before, 1);
    sleep_ms((int)(t1 + 2001 - now_ms()));
    assert_int_equal(is_held(l), 0); /* even if the renewal thread has not reported yet */
    assert_true(wait_count(&lost, 1, 1000));
    assert_true(lost.first_at - t0 < 2000 + 150);
    mp_lock_free(l);
    fake_stop(f);
}

/* A holder paused (SIGSTOP) past its TTL while another process takes the
 * lock gets on_lost exactly once after SIGCONT, even when its main thread
 * releases at the same moment; the release says the hold was not ours. */
static void test_paused_holder_reports_loss_once(void **state) {
    (void)state;
    sidecar_proc sc;
    assert_int_equal(sidecar_start(&sc, 0, NULL), 0);
    for (int round = 0; round < 4; round++) {
        child_proc c;
        char *argv[] = {(char *)g_holder_bin, sc.url, (char *)"paused", (char *)"hold", (char *)"3", NULL};
        assert_int_equal(child_start(&c, argv), 0);
        char line[256];
        assert_int_equal(child_read_line(&c, line, sizeof line, 10000), 0);
        assert_non_null(strstr(line, "ACQUIRED"));
        kill(c.pid, SIGSTOP);
        mp_lock *other = new_lock(sc.url, "paused", "other", 3, NULL, NULL);
        assert_int_equal(mp_lock_acquire(other, 10000), MP_OK);
        if (round == 0) {
            kill(c.pid, SIGCONT);
            sleep_ms(300); /* the renewal thread wakes up first */
            close(c.in_fd);
        } else {
            close(c.in_fd); /* the release races the renewal thread's wake-up */
            kill(c.pid, SIGCONT);
        }
        c.in_fd = -1;
        int lost = 0, released = 0;
        char release_rc[256] = "";
        while (child_read_line(&c, line, sizeof line, 5000) == 0) {
            fprintf(stderr, "paused holder, round %d: %s\n", round, line);
            if (strncmp(line, "LOST", 4) == 0) lost++;
            if (strncmp(line, "RELEASE ", 8) == 0) {
                released = 1;
                snprintf(release_rc, sizeof release_rc, "%s", line + 8);
            }
        }
        int status = child_wait(&c, 5000);
        assert_true(status != -1);
        assert_int_equal(lost, 1);
        assert_true(released);
        assert_true(strcmp(release_rc, "MP_ELOST") == 0 || strcmp(release_rc, "MP_ENOTHELD") == 0);
        int held = 0;
        mp_lock_is_held(other, &held);
        assert_int_equal(held, 1); /* the paused holder's release did not free ours */
        mp_lock_free(other);
    }
    sidecar_kill(&sc, SIGKILL);
}

/* ---- 3. clear codes ------------------------------------------------------ */

static void test_503_reasons_map_to_codes(void **state) {
    (void)state;
    assert_string_equal(mp_error_name(MP_ESHUTDOWN), "MP_ESHUTDOWN");
    assert_string_equal(mp_error_name(MP_ELIMIT), "MP_ELIMIT");
    assert_int_equal(MP_ESHUTDOWN, -17);
    assert_int_equal(MP_ELIMIT, -18);
    struct {
        int status;
        const char *body;
        int code;
        const char *says;
    } cases[] = {
        {503, "{\"message\":\"mp-sidecar is shutting down\",\"reason\":\"ShuttingDown\"}", MP_ESHUTDOWN, "shutting down"},
        {503, "{\"message\":\"mp-sidecar is shutting down\"}", MP_ESHUTDOWN, "shutting down"},
        {503, "{\"message\":\"too many connections\",\"reason\":\"Overloaded\"}", MP_ELIMIT, "too many connections"},
        {503, "{\"message\":\"too many locks\",\"reason\":\"TooManyLocks\"}", MP_ELIMIT, "too many locks"},
        {503, "{\"message\":\"etcd down\",\"reason\":\"BackendFailure\"}", MP_EBACKEND, "etcd down"},
        {500, "{\"message\":\"assertion failed\",\"reason\":\"Internal\"}", MP_ERROR, "assertion failed"},
        {408, "{\"message\":\"too slow\",\"reason\":\"RequestTimeout\"}", MP_EPROTOCOL, "too slow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct script s;
        script_init(&s);
        s.put_status = cases[i].status;
        s.put_status_body = cases[i].body;
        fake_server *f = fake_start(scripted, &s);
        mp_lock *l = new_lock(fake_url(f), "codes", "me", 3, NULL, NULL);
        int rc = mp_lock_acquire(l, 2000);
        if (rc != cases[i].code) fprintf(stderr, "case %zu: %s %s\n", i, mp_error_name(rc), mp_error_last());
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(mp_error_last(), cases[i].says));
        mp_lock_free(l);
        fake_stop(f);
    }
}

static void test_empty_reply_is_not_called_unreachable(void **state) {
    (void)state;
    const char *specials[] = {FAKE_CLOSE, FAKE_RESET};
    for (size_t i = 0; i < 2; i++) {
        struct script s;
        script_init(&s);
        s.put_special = specials[i];
        fake_server *f = fake_start(scripted, &s);
        mp_lock *l = new_lock(fake_url(f), "empty-reply", "me", 3, NULL, NULL);
        int rc = mp_lock_acquire(l, 2000);
        fprintf(stderr, "%s: %s\n", mp_error_name(rc), mp_error_last());
        assert_int_equal(rc, MP_ESIDECAR);
        assert_null(strstr(mp_error_last(), "Start it"));
        assert_non_null(strstr(mp_error_last(), fake_url(f)));
        assert_non_null(strstr(mp_error_last(), "closed the connection"));
        mp_lock_free(l);
        fake_stop(f);
    }
}

/* ---- 4. deadlines and limits -------------------------------------------- */

static void test_silent_sidecar_cannot_stretch_deadlines(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.put_special = FAKE_HANG;
    fake_server *f = fake_start(scripted, &s);
    mp_lock *l = new_lock(fake_url(f), "silent", "me", 3, NULL, NULL);
    double t0 = now_ms();
    assert_int_equal(mp_lock_acquire(l, 500), MP_ETIMEOUT);
    double took = now_ms() - t0;
    fprintf(stderr, "acquire(500) against a silent sidecar returned after %.0f ms: %s\n", took, mp_error_last());
    assert_true(took >= 450 && took <= 500 + 150);
    t0 = now_ms();
    int rc = mp_lock_try_acquire(l);
    took = now_ms() - t0;
    fprintf(stderr, "try_acquire against a silent sidecar returned after %.0f ms: %s\n", took, mp_error_last());
    assert_int_equal(rc, MP_ETIMEOUT);
    assert_true(took <= 1000 + 150);
    t0 = now_ms();
    assert_int_equal(mp_lock_acquire(l, 0), MP_ETIMEOUT);
    assert_true(now_ms() - t0 <= 1000 + 150);
    mp_lock_free(l);
    fake_stop(f);
}

/* A body that never ends is cut at 1 MiB; afterwards the same handle works
 * against a real sidecar on the same address. */
static void test_endless_body_is_capped_and_handle_recovers(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.put_special = FAKE_HUGE;
    fake_server *f = fake_start(scripted, &s);
    int port = fake_port(f);
    mp_lock *l = new_lock(fake_url(f), "endless", "me", 3, NULL, NULL);
    double t0 = now_ms();
    int rc = mp_lock_acquire(l, 5000);
    fprintf(stderr, "endless body: %s after %.0f ms: %s\n", mp_error_name(rc), now_ms() - t0, mp_error_last());
    assert_int_equal(rc, MP_EPROTOCOL);
    assert_non_null(strstr(mp_error_last(), "1 MiB"));
    /* Other hostile answers on the same handle. */
    SCRIPT_SET(s, s.put_special = FAKE_CLOSE);
    assert_int_equal(mp_lock_acquire(l, 1000), MP_ESIDECAR);
    SCRIPT_SET(s, s.put_special = NULL);
    SCRIPT_SET(s, s.bad_put_body = "{}");
    assert_int_equal(mp_lock_acquire(l, 1000), MP_EPROTOCOL);
    fake_stop(f);
    sidecar_proc sc;
    int started = -1;
    for (int i = 0; i < 50 && started != 0; i++) {
        started = sidecar_start(&sc, port, NULL);
        if (started != 0) sleep_ms(100);
    }
    assert_int_equal(started, 0);
    assert_int_equal(mp_lock_acquire(l, 5000), MP_OK);
    assert_int_equal(is_held(l), 1);
    assert_int_equal(mp_lock_release(l), MP_OK);
    mp_lock_free(l);
    sidecar_kill(&sc, SIGTERM);
}

/* ---- 5. sessions ---------------------------------------------------------- */

static const char *kHello1 =
    "{\"type\":\"hello\",\"session\":\"s-one\",\"instance\":\"i-one\",\"durable\":false,\"heartbeatMs\":5000}";

static void test_session_shutdown_marks_lost_then_acks(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.sessions = 1;
    fake_server *f = fake_start(scripted, &s);
    fake_stream_set_greeting(f, kHello1);
    struct counter lost_a = {0, 0}, lost_b = {0, 0};
    mp_lock *a = new_lock(fake_url(f), "sess-a", "me", 15, count_cb, &lost_a);
    mp_lock *b = new_lock(fake_url(f), "sess-b", "me", 15, count_cb, &lost_b);
    assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
    assert_true(put_body_has(&s, "\"session\":\"s-one\""));
    assert_int_equal(mp_lock_acquire(b, 2000), MP_OK);
    assert_int_equal(fake_stream_count(f), 1); /* one session for the process and URL */
    assert_int_equal(fake_stream_send(f, "{\"type\":\"ping\"}"), 0);
    sleep_ms(100);
    assert_int_equal(is_held(a), 1);
    /* The next connection gets a new session (as a restarted sidecar gives). */
    fake_stream_set_greeting(
        f, "{\"type\":\"hello\",\"session\":\"s-one-b\",\"instance\":\"i-one\",\"durable\":false,\"heartbeatMs\":5000}");
    assert_int_equal(fake_stream_send(f, "{\"type\":\"shutdown\",\"message\":\"SIGTERM\"}"), 0);
    double closed = fake_stream_wait_closed(f, 0, 3000);
    assert_true(closed > 0);
    /* Both on_lost ran before the stream was closed (the acknowledgement). */
    assert_int_equal(atomic_load(&lost_a.n), 1);
    assert_int_equal(atomic_load(&lost_b.n), 1);
    assert_true(lost_a.first_at <= closed && lost_b.first_at <= closed);
    assert_int_equal(is_held(a), 0);
    assert_int_equal(is_held(b), 0);
    assert_int_equal(mp_lock_release(a), MP_ENOTHELD);
    /* The client reconnects (with backoff) and the next hold is tied again. */
    assert_int_equal(fake_stream_wait_count(f, 2, 5000), 0);
    /* The stream is open; the client may not have read its hello yet (and
     * acquires untied until it has). */
    int tied = 0;
    for (double until = now_ms() + 2000; !tied && now_ms() < until;) {
        assert_int_equal(mp_lock_acquire(a, 2000), MP_OK);
        tied = put_body_has(&s, "\"session\":\"s-one-b\"");
        if (!tied) {
            assert_int_equal(mp_lock_release(a), MP_OK);
            sleep_ms(20);
        }
    }
    assert_true(tied);
    sleep_ms(200);
    assert_int_equal(is_held(a), 1);
    assert_int_equal(atomic_load(&lost_a.n), 1);
    mp_lock_free(a);
    mp_lock_free(b);
    fake_stop(f);
}

static void test_session_lost_event_and_instance_change(void **state) {
    (void)state;
    struct script s;
    script_init(&s);
    s.sessions = 1;
    s.next_token = 40;
    fake_server *f = fake_start(scripted, &s);
    fake_stream_set_greeting(f, kHello1);
    struct counter lost = {0, 0}, lost_other = {0, 0};
    mp_lock *l = new_lock(fake_url(f), "sess-lost", "me", 15, count_cb, &lost);
    assert_int_equal(mp_lock_acquire(l, 2000), MP_OK);
    /* A "lost" event for another token or name changes nothing. */
    assert_int_equal(fake_stream_send(f, "{\"type\":\"lost\",\"name\":\"sess-lost\",\"owner\":\"me\",\"token\":39}"), 0);
    assert_int_equal(fake_stream_send(f, "{\"type\":\"lost\",\"name\":\"other\",\"owner\":\"me\",\"token\":40}"), 0);
    sleep_ms(200);
    assert_int_equal(is_held(l), 1);
    assert_int_equal(fake_stream_send(f, "{\"type\":\"lost\",\"name\":\"sess-lost\",\"owner\":\"me\",\"token\":40,"
                                         "\"reason\":\"expired\"}"),
                     0);
    assert_true(wait_count(&lost, 1, 2000));
    assert_int_equal(is_held(l), 0);

    /* The sidecar restarts (stream broken from its side) as a new instance of
     * a non-durable backend: holds made through the old one are lost. */
    mp_lock *m = new_lock(fake_url(f), "sess-other", "me", 15, count_cb, &lost_other);
    assert_int_equal(mp_lock_acquire(m, 2000), MP_OK);
    fake_stream_set_greeting(
        f, "{\"type\":\"hello\",\"session\":\"s-two\",\"instance\":\"i-two\",\"durable\":false,\"heartbeatMs\":5000}");
    fake_stream_close(f, 0);
    assert_true(wait_count(&lost_other, 1, 5000));
    assert_int_equal(is_held(m), 0);
    assert_int_equal(mp_lock_acquire(m, 2000), MP_OK);
    assert_true(put_body_has(&s, "\"session\":\"s-two\""));
    mp_lock_free(m);
    mp_lock_free(l);
    fake_stop(f);
}

/* With a sidecar that serves sessions: a SIGKILLed holder process frees its
 * lock for another process in well under a second (no TTL wait). */
static int sidecar_has_sessions(const char *url) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -m 1 -w '%%{http_code}' %s/session", url);
    FILE *p = popen(cmd, "r");
    char code[16] = "";
    if (p) {
        if (!fgets(code, sizeof code, p)) code[0] = 0;
        pclose(p);
    }
    return strcmp(code, "200") == 0;
}

static void test_session_crash_failover(void **state) {
    (void)state;
    sidecar_proc sc;
    assert_int_equal(sidecar_start(&sc, 0, NULL), 0);
    if (!sidecar_has_sessions(sc.url)) {
        sidecar_kill(&sc, SIGKILL);
        skip();
    }
    double worst = 0;
    for (int round = 0; round < 3; round++) {
        child_proc c;
        char *argv[] = {(char *)g_holder_bin, sc.url, (char *)"crash", (char *)"hold", (char *)"15", NULL};
        assert_int_equal(child_start(&c, argv), 0);
        char line[256];
        assert_int_equal(child_read_line(&c, line, sizeof line, 10000), 0);
        assert_non_null(strstr(line, "ACQUIRED"));
        mp_lock *l = new_lock(sc.url, "crash", "parent", 15, NULL, NULL);
        assert_int_equal(mp_lock_try_acquire(l), MP_EBUSY);
        kill(c.pid, SIGKILL);
        double killed = now_ms();
        assert_int_equal(mp_lock_acquire(l, 14000), MP_OK);
        double failover = now_ms() - killed;
        fprintf(stderr, "failover after SIGKILL of the holder (TTL 15 s): %.1f ms\n", failover);
        if (failover > worst) worst = failover;
        child_wait(&c, 5000);
        mp_lock_free(l);
    }
    assert_true(worst < 1000);
    sidecar_kill(&sc, SIGTERM);
}


/* SIGTERM to the sidecar: the holder (another process) is told its lock is
 * lost before the sidecar lets a waiter have it. */
struct bg_acquire {
    mp_lock *lock;
    int rc;
    double done_at;
};

static void *bg_acquire_main(void *arg) {
    struct bg_acquire *b = arg;
    b->rc = mp_lock_acquire(b->lock, 5000);
    b->done_at = now_ms();
    return NULL;
}

static void test_sidecar_sigterm_reports_loss_first(void **state) {
    (void)state;
    sidecar_proc sc;
    assert_int_equal(sidecar_start(&sc, 0, NULL), 0);
    if (!sidecar_has_sessions(sc.url)) {
        sidecar_kill(&sc, SIGKILL);
        skip();
    }
    child_proc c;
    char *argv[] = {(char *)g_holder_bin, sc.url, (char *)"sigterm", (char *)"hold", (char *)"15", NULL};
    assert_int_equal(child_start(&c, argv), 0);
    char line[256];
    assert_int_equal(child_read_line(&c, line, sizeof line, 10000), 0);
    assert_non_null(strstr(line, "ACQUIRED"));
    struct bg_acquire b = {new_lock(sc.url, "sigterm", "waiter", 15, NULL, NULL), -100, 0};
    pthread_t t;
    pthread_create(&t, NULL, bg_acquire_main, &b);
    sleep_ms(300); /* the waiter long-polls */
    double term = now_ms();
    kill(sc.pid, SIGTERM);
    assert_int_equal(child_read_line(&c, line, sizeof line, 3000), 0);
    assert_true(strncmp(line, "LOST ", 5) == 0);
    double lost_at = atof(line + 5);
    pthread_join(t, NULL);
    fprintf(stderr, "SIGTERM: holder's on_lost %.1f ms after the signal; waiter: %s (%.1f ms after)\n",
            lost_at - term, mp_error_name(b.rc), b.done_at - term);
    assert_true(lost_at - term < 2000);
    if (b.rc == MP_OK) assert_true(lost_at < b.done_at);
    close(c.in_fd);
    c.in_fd = -1;
    child_wait(&c, 5000);
    mp_lock_free(b.lock);
    sidecar_wait_exit(&sc, 10000);
    sidecar_kill(&sc, SIGKILL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_malformed_grants_are_protocol_errors, teardown_test),
        cmocka_unit_test_teardown(test_token_must_not_go_backwards, teardown_test),
        cmocka_unit_test_teardown(test_renewal_for_another_owner_is_a_loss, teardown_test),
        cmocka_unit_test_teardown(test_release_answered_409_is_elost, teardown_test),
        cmocka_unit_test_teardown(test_unanswered_renewals_end_the_hold_by_the_deadline, teardown_test),
        cmocka_unit_test_teardown(test_paused_holder_reports_loss_once, teardown_test),
        cmocka_unit_test_teardown(test_503_reasons_map_to_codes, teardown_test),
        cmocka_unit_test_teardown(test_empty_reply_is_not_called_unreachable, teardown_test),
        cmocka_unit_test_teardown(test_silent_sidecar_cannot_stretch_deadlines, teardown_test),
        cmocka_unit_test_teardown(test_endless_body_is_capped_and_handle_recovers, teardown_test),
        cmocka_unit_test_teardown(test_session_shutdown_marks_lost_then_acks, teardown_test),
        cmocka_unit_test_teardown(test_session_lost_event_and_instance_change, teardown_test),
        cmocka_unit_test_teardown(test_session_crash_failover, teardown_test),
        cmocka_unit_test_teardown(test_sidecar_sigterm_reports_loss_first, teardown_test),
    };
    /* MP_TEST_FILTER=test_session* runs only the matching tests. */
    if (getenv("MP_TEST_FILTER")) cmocka_set_test_filter(getenv("MP_TEST_FILTER"));
    return cmocka_run_group_tests_name("sync_c_api_faults", tests, setup_suite, NULL);
}
