/* Helper process for the C API tests: holds a lock or runs an election in a
 * separate process, reporting on stdout, until its stdin closes.
 *   lock_holder URL NAME hold TTL        acquire, print "ACQUIRED <token> <CLOCK_MONOTONIC ms>", release at EOF
 *                                        and print "RELEASE <code name>"; "LOST <CLOCK_MONOTONIC ms>" on each on_lost
 *   lock_holder URL NAME hold-nohandler TTL   same, but no on_lost handler
 *   lock_holder URL NAME elect TTL IDENTITY   print "LEADER" / "LOST" as they happen
 */
#include <metaparticle.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

static void on_lost(mp_lock *l, void *ud) {
    (void)l; (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* system-wide: comparable with the test's clock */
    printf("LOST %.3f\n", ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6);
    fflush(stdout);
}
static void on_leader(mp_election *e, void *ud) { (void)e; (void)ud; printf("LEADER\n"); fflush(stdout); }
static void on_elect_lost(mp_election *e, void *ud) { (void)e; (void)ud; printf("LOST\n"); fflush(stdout); }

static void *stop_at_eof(void *arg) {
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    mp_election_stop((mp_election *)arg);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *url = argv[1], *name = argv[2], *mode = argv[3];
    unsigned ttl = (unsigned)atoi(argv[4]);
    if (strncmp(mode, "hold", 4) == 0) {
        mp_lock_options o = MP_LOCK_OPTIONS_INIT;
        o.sidecar_url = url;
        o.ttl_seconds = ttl;
        if (strcmp(mode, "hold") == 0) o.on_lost = on_lost;
        mp_lock *l;
        if (mp_lock_create(&l, name, &o) != 0 || mp_lock_acquire(l, 20000) != 0) {
            printf("ERROR %s\n", mp_error_last());
            return 3;
        }
        uint64_t token = 0;
        mp_lock_token(l, &token);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        printf("ACQUIRED %" PRIu64 " %.3f\n", token, ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6);
        fflush(stdout);
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
        int rc = mp_lock_release(l);
        printf("RELEASE %s\n", mp_error_name(rc));
        fflush(stdout);
        mp_lock_free(l);
        return 0;
    }
    if (strcmp(mode, "elect") == 0 && argc >= 6) {
        mp_election_options o = MP_ELECTION_OPTIONS_INIT;
        o.sidecar_url = url;
        o.ttl_seconds = ttl;
        o.identity = argv[5];
        o.on_leader = on_leader;
        o.on_lost = on_elect_lost;
        mp_election *e;
        if (mp_election_create(&e, name, &o) != 0) return 3;
        pthread_t t;
        pthread_create(&t, NULL, stop_at_eof, e);
        int rc = mp_election_run(e);
        pthread_join(t, NULL);
        mp_election_free(e);
        return rc == 0 ? 0 : 4;
    }
    return 2;
}
