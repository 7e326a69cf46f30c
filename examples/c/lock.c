/* The seed Lock example in C: take the lock "test", hold it for 45 seconds
 * (or --hold SECONDS), release it.
 *
 *   mp-sidecar &            # the sidecar, memory backend
 *   ./lock --hold 5
 */
#include <metaparticle.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_lost(mp_lock *lock, void *user_data) {
    (void)user_data;
    printf("I lost the lock '%s'!\n", mp_lock_name(lock));
    fflush(stdout);
}

int main(int argc, char **argv) {
    int hold = 45;
    const char *name = "test";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc) {
            hold = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--hold SECONDS] [--name LOCK]\n", argv[0]);
            return 2;
        }
    }

    mp_lock_options opts = MP_LOCK_OPTIONS_INIT;
    opts.on_lost = on_lost;
    mp_lock *lock;
    if (mp_lock_create(&lock, name, &opts) != MP_OK) {
        fprintf(stderr, "error: %s\n", mp_error_last());
        return 1;
    }
    printf("Attempting to lock '%s' as %s\n", name, mp_lock_owner(lock));
    fflush(stdout);
    if (mp_lock_acquire(lock, -1) != MP_OK) {
        fprintf(stderr, "error: %s\n", mp_error_last());
        mp_lock_free(lock);
        return 1;
    }
    uint64_t token = 0;
    mp_lock_token(lock, &token);
    printf("I have the lock! (fencing token %" PRIu64 ")\n", token);
    printf("Holding the lock for %d seconds\n", hold);
    fflush(stdout);
    sleep((unsigned)hold);
    mp_lock_release(lock);
    printf("Unlocked\n");
    mp_lock_free(lock);
    return 0;
}
