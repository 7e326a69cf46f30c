/* The seed Election example in C: contend for leadership of "test" and say
 * when this process becomes or stops being the leader. Ctrl-C (or SIGTERM)
 * steps down at once, so another replica takes over within milliseconds.
 *
 *   mp-sidecar &
 *   ./election & ./election & ./election
 *   ./election --ttl 5 my-election    # shorter TTL: faster failover after a crash
 */
#include <metaparticle.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_leader(mp_election *e, void *user_data) {
    (void)user_data;
    printf("[%s] I am the leader\n", mp_election_identity(e));
    fflush(stdout);
}

static void on_lost(mp_election *e, void *user_data) {
    (void)user_data;
    printf("[%s] I lost the leader\n", mp_election_identity(e));
    fflush(stdout);
}

/* Signals are turned into mp_election_stop() by a thread that waits for them,
 * since a signal handler may not call into the library. */
static void *signal_waiter(void *arg) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig;
    sigwait(&set, &sig);
    mp_election_stop((mp_election *)arg);
    return NULL;
}

int main(int argc, char **argv) {
    const char *name = "test";
    unsigned ttl = 0; /* 0: the library default (15 s) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc) {
            ttl = (unsigned)atoi(argv[++i]);
        } else if (argv[i][0] != '-') {
            name = argv[i];
        } else {
            fprintf(stderr, "usage: %s [--ttl SECONDS] [ELECTION-NAME]\n", argv[0]);
            return 2;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by the library's threads */

    mp_election_options opts = MP_ELECTION_OPTIONS_INIT;
    opts.on_leader = on_leader;
    opts.on_lost = on_lost;
    opts.ttl_seconds = ttl;
    mp_election *election;
    if (mp_election_create(&election, name, &opts) != MP_OK) {
        fprintf(stderr, "error: %s\n", mp_error_last());
        return 1;
    }
    const char *identity = mp_election_identity(election); /* default: <host>/<pid> */
    pthread_t waiter;
    pthread_create(&waiter, NULL, signal_waiter, election);
    printf("[%s] Waiting for election '%s'\n", identity, name);
    fflush(stdout);
    int rc = mp_election_run(election);
    if (rc != MP_OK) fprintf(stderr, "error: %s\n", mp_error_last());
    printf("[%s] Stopped\n", identity);
    mp_election_free(election);
    return rc == MP_OK ? 0 : 1;
}
