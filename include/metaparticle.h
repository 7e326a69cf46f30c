/*
 * metaparticle.h: the stable C ABI of libmetaparticle.
 *
 * This is the only public header. Everything the language bindings (Python,
 * Node, .NET) use goes through the functions declared here.
 *
 * Conventions (modelled on libgit2 / libcurl):
 *
 *  - Objects are opaque handles created by mp_*_create() and destroyed by the
 *    matching mp_*_free(). Passing NULL to a free function is a no-op.
 *  - Every fallible function returns an int: MP_OK (0) on success, a negative
 *    MP_E* code on failure. Results come back through out-parameters.
 *  - After a failure, mp_error_last() returns a human-readable message for the
 *    calling thread (thread-local; valid until the next failing call on the
 *    same thread). Messages say what went wrong and what to do about it.
 *  - Options are structs whose first field is `unsigned int version`. Always
 *    initialise them with the matching *_INIT macro, then set what you need,
 *    so new fields can be added without breaking the ABI.
 *  - Strings passed in are copied; the caller keeps ownership. Strings handed
 *    out through `char **` are owned by the caller and freed with mp_free().
 *  - No C++ exception ever crosses this boundary.
 *
 * Threads: all functions may be called from any thread. Callbacks are invoked
 * from threads owned by the library, as documented for each callback; they
 * are never invoked while the library holds an internal lock, so a callback
 * may call back into the library on the same object (except the *_free
 * function of that object).
 */
#ifndef METAPARTICLE_H
#define METAPARTICLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MP_EXTERN __declspec(dllexport)
#else
#define MP_EXTERN __attribute__((visibility("default")))
#endif

#define MP_VERSION_MAJOR 0
#define MP_VERSION_MINOR 1
#define MP_VERSION_PATCH 0
#define MP_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/** Return codes. Success is 0; failures are negative. */
typedef enum mp_error_code {
    MP_OK = 0,
    MP_ERROR = -1,        /**< unspecified failure; see mp_error_last() */
    MP_EINVAL = -2,       /**< invalid argument: NULL, bad lock name, bad option */
    MP_ETIMEOUT = -3,     /**< the operation's timeout passed */
    MP_EBUSY = -4,        /**< the lock is held by someone else (try-acquire) */
    MP_ESIDECAR = -5,     /**< the sidecar could not be reached */
    MP_EPROTOCOL = -6,    /**< the sidecar (or server) answered something unexpected */
    MP_ELOST = -7,        /**< the lock was lost (renewal not confirmed in time) */
    MP_ENOTHELD = -8,     /**< the lock is not held by this handle */
    MP_ESTATE = -9,       /**< call not valid in the object's current state */
    MP_EBACKEND = -10,    /**< the sidecar's storage backend failed (HTTP 5xx) */
    MP_ENOMEM = -11,      /**< out of memory */
    MP_ECANCELED = -12,   /**< a blocking call was canceled (mp_lock_cancel, stop) */
    MP_EVERSION = -13,    /**< options struct version not supported */
    MP_ERANGE = -14,      /**< an output did not fit */
    MP_EREGISTRY = -15,   /**< a container registry was unreachable, refused credentials or failed */
    MP_EENGINE = -16,     /**< the container engine (Docker/Podman API) was unreachable or failed */
    MP_ESHUTDOWN = -17,   /**< mp-sidecar is shutting down (HTTP 503, reason ShuttingDown); retry
                               against its replacement */
    MP_ELIMIT = -18       /**< a limit of mp-sidecar was reached: too many connections (total or
                               from this address) or too many lock names; retry later */
} mp_error_code;

/**
 * The message describing the last failure on the calling thread, or "" when
 * there was none. Never NULL. Valid until the next failing call on this thread.
 */
MP_EXTERN const char *mp_error_last(void);

/** The code of the last failure on the calling thread (MP_OK if none). */
MP_EXTERN int mp_error_last_code(void);

/** A static, short name for an error code, e.g. "MP_ETIMEOUT". Never NULL. */
MP_EXTERN const char *mp_error_name(int code);

/** Free memory the library handed out (strings returned through char **). */
MP_EXTERN void mp_free(void *ptr);

/** The library version, e.g. "0.1.0" (may differ from MP_VERSION_STRING
 *  when an application runs against a newer shared library). */
MP_EXTERN const char *mp_version(void);

/* ------------------------------------------------------------------------ */
/* Sync: locks                                                               */
/* ------------------------------------------------------------------------ */

/**
 * A distributed lock, held through mp-sidecar.
 *
 * While held, the library renews the lock in a background thread every
 * ttl/3 seconds. The lock is reported lost when a renewal cannot be
 * confirmed within 2/3 of the TTL (measured from when the last confirmed
 * renewal was *sent*; also checked as soon as the process resumes after a
 * pause such as SIGSTOP), when the sidecar says someone else holds it (409),
 * when it answers a renewal with something invalid (MP_EPROTOCOL: not lock
 * JSON, another owner, a token that is not an integer >= 1 or is lower than
 * one this handle saw) or says it is shutting down, or when the session
 * stream reports the hold lost (below). Reporting: on_lost is called, or, if
 * there is no on_lost handler, the process prints why and exits with status
 * 1. The loss is reported before the TTL could have expired for any other
 * contender, and exactly once per lost hold (see mp_lock_release for a loss
 * that the release itself discovers).
 *
 * Sessions: on the first acquire, the library opens one session per process
 * and sidecar URL (a `GET /session` stream kept by a library thread until the
 * process exits; sidecars without it are used without). Holds are tied to
 * it, so when the process dies the sidecar frees its locks at once instead of
 * after the TTL, and a stopping sidecar tells every holder the lock is lost
 * (on_lost) before anyone else can take it. The stream is closed by the
 * library only after every hold tied to it was reported lost.
 */
typedef struct mp_lock mp_lock;

/**
 * Lock callback. `lock` is the handle the callback belongs to.
 * Runs on the lock's internal thread (never the caller's), outside any
 * internal lock: it may call mp_lock_release(), mp_lock_token(),
 * mp_lock_is_held() and mp_lock_lock_async() on the same handle, but not
 * mp_lock_free(). Keep it short: renewals continue on another thread, but the
 * next callback of this lock waits for this one to return.
 */
typedef void (*mp_lock_cb)(mp_lock *lock, void *user_data);

#define MP_LOCK_OPTIONS_VERSION 1

typedef struct mp_lock_options {
    unsigned int version;     /**< MP_LOCK_OPTIONS_VERSION */
    const char *sidecar_url;  /**< NULL: $METAPARTICLE_SIDECAR, else http://127.0.0.1:13131 */
    const char *owner;        /**< holder identity; NULL: "<host name>/<pid>" */
    unsigned int ttl_seconds; /**< 0: 15 seconds. At least 3 when set. */
    mp_lock_cb on_lost;       /**< called exactly once per lost hold, on the
                                   lock's callback thread; NULL: print why and
                                   exit(1) on a loss noticed by the library */
    void *user_data;          /**< passed to on_lost */
} mp_lock_options;

#define MP_LOCK_OPTIONS_INIT { MP_LOCK_OPTIONS_VERSION, NULL, NULL, 0, NULL, NULL }

/**
 * Create a lock handle for `name`. Does not contact the sidecar.
 *
 * `name` must be a Kubernetes object name (RFC 1123 subdomain: lowercase
 * letters, digits, '-' and '.', starting and ending with a letter or digit,
 * at most 253 characters); otherwise MP_EINVAL. `opts` may be NULL.
 */
MP_EXTERN int mp_lock_create(mp_lock **out, const char *name, const mp_lock_options *opts);

/**
 * Release the lock if held, stop its threads and free the handle. Waits for a
 * running callback to return, and runs an on_lost that is still pending (a
 * loss is reported even when the handle is freed right after it; other
 * pending callbacks are dropped). NULL is a no-op. Must not be called from
 * one of this lock's callbacks.
 */
MP_EXTERN void mp_lock_free(mp_lock *lock);

/**
 * Block until the lock is acquired or `timeout_ms` passes (-1: wait forever;
 * 0: one attempt, like mp_lock_try_acquire but returning MP_ETIMEOUT).
 * Waiting is by long-poll on the sidecar, so a released lock is taken within
 * milliseconds. Returns within timeout_ms + about 100 ms whatever the sidecar
 * does (one attempt: within 1.1 s); a grant that arrives too late is given
 * back. Runs on the calling thread.
 *
 * Returns MP_OK; MP_ETIMEOUT (held elsewhere until the timeout, or the
 * sidecar did not answer in time); MP_ECANCELED (mp_lock_cancel); MP_ESTATE
 * (already held or acquiring); MP_ESIDECAR (connection refused: start
 * mp-sidecar; or the connection was dropped without an answer);
 * MP_EPROTOCOL (an invalid answer, or one over 1 MiB); MP_ESHUTDOWN (the
 * sidecar is stopping); MP_ELIMIT (too many connections or lock names at the
 * sidecar: retry later); MP_EBACKEND (its storage failed); MP_EINVAL (400);
 * MP_ERROR (a sidecar bug, HTTP 500). After any error the handle stays
 * usable.
 */
MP_EXTERN int mp_lock_acquire(mp_lock *lock, int timeout_ms);

/** One attempt: MP_OK if acquired, MP_EBUSY if someone else holds it.
 *  Returns within 1.1 s whatever the sidecar does; other codes as for
 *  mp_lock_acquire (MP_ETIMEOUT: the sidecar did not answer in time). */
MP_EXTERN int mp_lock_try_acquire(mp_lock *lock);

/**
 * Acquire in the background (the JavaScript `lock.lock()` shape): returns at
 * once; a lock-owned thread waits for the lock and calls `on_acquired` (with
 * `user_data`) once it is held. on_lost comes from the options. Sidecar
 * errors while waiting are retried (every second) rather than reported.
 * Cancel with mp_lock_cancel() or mp_lock_release().
 */
MP_EXTERN int mp_lock_lock_async(mp_lock *lock, mp_lock_cb on_acquired, void *user_data);

/**
 * Give the lock up at once: renewals stop and the sidecar clears the holder
 * (this hold only: the DELETE names its fencing token), so a waiter acquires
 * within milliseconds. Also cancels a pending mp_lock_lock_async().
 *
 * Returns MP_OK when the hold was ours until released. MP_ENOTHELD when
 * neither held nor pending, including after a loss that was already
 * reported (on_lost called or queued). MP_ELOST when the release itself
 * finds that the hold had been lost unnoticed: its renew deadline had passed
 * (the process was paused, say), or the sidecar answers 404/409 (no longer
 * ours). In the MP_ELOST case on_lost is ALSO called, once, if set (never
 * twice for one hold: the release and the renewal thread agree on who
 * reports); without on_lost the process does not exit, as the caller is told
 * by the return code. MP_ESIDECAR etc. when the sidecar could not be told
 * (the hold then ends locally and frees at its TTL). Callable from any
 * thread, including the lock's callbacks.
 */
MP_EXTERN int mp_lock_release(mp_lock *lock);

/**
 * Cancel a blocking mp_lock_acquire() running in another thread (it returns
 * MP_ECANCELED) and a pending mp_lock_lock_async(). Safe to call from any
 * thread; no-op if nothing waits. A cancel is not remembered for a later
 * call, so one sent just before the acquire starts is lost: to cancel an
 * acquire running in another thread reliably, repeat mp_lock_cancel() (say
 * every 20 ms) until that acquire returns. This leaves no stale state behind.
 * A waiting acquire returns within about 50 ms of the cancel.
 */
MP_EXTERN int mp_lock_cancel(mp_lock *lock);

/** *held = 1 while this handle holds the lock (not lost, not released). It
 *  turns 0 no later than the renew deadline (2/3 TTL from the last
 *  confirmed send), even before the renewal thread has reported the loss. */
MP_EXTERN int mp_lock_is_held(mp_lock *lock, int *held);

/**
 * The fencing token of the current hold: strictly increasing across all
 * holders of this lock name, unchanged by renewals. MP_ENOTHELD if not held
 * (exactly when mp_lock_is_held gives 0).
 */
MP_EXTERN int mp_lock_token(mp_lock *lock, uint64_t *token);

/** The lock's name and owner identity (static for the handle's lifetime). */
MP_EXTERN const char *mp_lock_name(mp_lock *lock);
MP_EXTERN const char *mp_lock_owner(mp_lock *lock);

/* ------------------------------------------------------------------------ */
/* Sync: leader election                                                     */
/* ------------------------------------------------------------------------ */

/**
 * A leader election: a lock held for as long as the process is healthy.
 * mp_election_run() contends, calls on_leader when elected, on_lost when
 * leadership ends for any reason other than mp_election_stop(), and then
 * contends again, until stopped.
 */
typedef struct mp_election mp_election;

/**
 * Election callback. Runs on the thread that called mp_election_run(), outside
 * any internal lock; it may call mp_election_stop(), mp_election_is_leader()
 * and mp_election_leader() (not mp_election_free()). Renewals continue on an
 * internal thread while it runs.
 */
typedef void (*mp_election_cb)(mp_election *election, void *user_data);

#define MP_ELECTION_OPTIONS_VERSION 1

typedef struct mp_election_options {
    unsigned int version;     /**< MP_ELECTION_OPTIONS_VERSION */
    const char *sidecar_url;  /**< NULL: $METAPARTICLE_SIDECAR, else http://127.0.0.1:13131 */
    const char *identity;     /**< this candidate; NULL: "<host name>/<pid>" */
    unsigned int ttl_seconds; /**< 0: 15 seconds */
    mp_election_cb on_leader; /**< became leader (may be NULL) */
    mp_election_cb on_lost;   /**< stopped being leader, not by stop (may be NULL) */
    void *user_data;
} mp_election_options;

#define MP_ELECTION_OPTIONS_INIT { MP_ELECTION_OPTIONS_VERSION, NULL, NULL, 0, NULL, NULL, NULL }

/** Create an election for `name` (same naming rules as locks). */
MP_EXTERN int mp_election_create(mp_election **out, const char *name,
                                 const mp_election_options *opts);

/** Stop if running, wait for run() to return, and free. NULL is a no-op. */
MP_EXTERN void mp_election_free(mp_election *election);

/**
 * Contend, lead, contend again after a loss; block until mp_election_stop().
 * Returns MP_OK after a stop; MP_ESTATE if already running. Sidecar outages
 * do not end the run: they are retried (a leader loses leadership first).
 */
MP_EXTERN int mp_election_run(mp_election *election);

/**
 * Make mp_election_run() return, giving up leadership at once if held
 * (on_lost is not called for a stop). Thread-safe; callable from callbacks.
 * Like mp_lock_cancel(), a stop is not remembered for a run() that has not
 * started yet: repeat it until run() returns. The election can run again.
 */
MP_EXTERN int mp_election_stop(mp_election *election);

/** This candidate's identity (static for the handle's lifetime). */
MP_EXTERN const char *mp_election_identity(mp_election *election);

/** *is_leader = 1 while this candidate leads. */
MP_EXTERN int mp_election_is_leader(mp_election *election, int *is_leader);

/**
 * The current leader's identity as the sidecar sees it, asked now. *out is a
 * new string to free with mp_free(), or NULL when nobody leads.
 */
MP_EXTERN int mp_election_leader(mp_election *election, char **out);

/* ------------------------------------------------------------------------ */
/* Package: containerize                                                     */
/* ------------------------------------------------------------------------ */

/*
 * mp_containerize() packages the calling program as a container image and
 * runs it: inside the container it runs the program's main function; outside,
 * it builds the image (no Docker daemon needed), pushes it when asked, and
 * runs replicas with the chosen runner, streaming their logs until Ctrl-C.
 *
 * Options are JSON text with the seed names, so every binding validates the
 * same way (NULL or "" = all defaults; JSON null for a member = not set):
 *
 *   "name"        image and container name; default: the executable's
 *                 basename made a DNS label (lowercase, [a-z0-9-], starting
 *                 with a letter, at most 63 characters)
 *   "repository"  image prefix: the image is repository/name:tag
 *                 (e.g. "docker.io/user", "127.0.0.1:5000/team")
 *   "tag"         default "latest"
 *   "ports"       [8080, ...] TCP ports the program listens on
 *   "replicas"    default 1
 *   "runner"      "docker" (default), "metaparticle" or "kubernetes" (same)
 *   "publish"     push the image to "repository" (required then)
 *   "public"      expose the ports beyond this machine (docker: bind 0.0.0.0
 *                 instead of 127.0.0.1; Kubernetes: a LoadBalancer Service)
 *   "shardSpec"   {"shards": N, "urlPattern": "..."}
 *   "jobSpec"     {"count": N}: run N instances to completion
 *   "namespace"   Kubernetes namespace
 *   "imagePullSecrets" ["secret", ...]: Kubernetes Secrets (type
 *                 kubernetes.io/dockerconfigjson) the pods pull the image with
 *   "env"         {"K": "V"} added to the image's environment
 *   "files"       [{"src": "host path", "dest": "/image/path"}] copied in
 *   "baseImage"   "registry/repo:tag" or "...@sha256:<hex>": build on top of
 *                 this image (OCI or Docker schema 2; from a multi-platform
 *                 index, its linux entry for this machine's architecture).
 *                 Its layers come first, then ours; its Env is kept (ours and
 *                 "env" win), and its WorkingDir and User unless "workingDir"
 *                 is given; Entrypoint and ports are ours. Its manifest and
 *                 config are read from its registry when the image is built
 *                 (credentials as for pushing); its layers are mounted or
 *                 copied into the target repository on publish, downloaded
 *                 for a local docker load. Not readable: MP_EREGISTRY.
 *   "dryRun"      print, instead of acting, YAML on stdout that
 *                 `kubectl apply -f -` takes: one document per Kubernetes
 *                 object, after a comment block holding the image
 *                 (reference, digest, config, manifest), the Docker
 *                 containers and the warnings
 *   "keepRunning" leave the containers running on Ctrl-C
 *   "quiet"       no progress on stderr (otherwise: a line per step, and
 *                 byte-level progress of each layer built and each blob
 *                 pushed: a bar when stderr is a terminal, else a line every
 *                 2 s)
 *   "command"     ["/abs/argv0", "arg", ...]: what the container runs;
 *                 default: this executable (/proc/self/exe) with the process's
 *                 own arguments. command[0] is copied into the image.
 *   "include"     ["/host/path", ...]: files or directories copied into the
 *                 image at the same absolute path (bindings use this for
 *                 runtimes and application files)
 *   "workingDir"  the container's working directory (default "/")
 *
 * An unknown option, a wrong type or a bad value is MP_EINVAL with a message
 * naming the option and saying what is expected.
 *
 * The image: an OCI image (manifest + config + up to four gzip'd tar layers,
 * by how often they change; empty ones are left out):
 *   "runtime"      the ELF interpreter, the shared-library closure of every
 *                  ELF file in the image, minimal /etc/passwd, /etc/group,
 *                  /etc/nsswitch.conf, the host's CA bundle and /tmp;
 *   "system"       command[0] and "include" paths in system directories (/usr,
 *                  /opt, ...) or in the installation of the interpreter that
 *                  command[0] is (pyenv, conda, nvm, /usr/local, a dotnet
 *                  outside /usr): the interpreter and its standard library;
 *   "dependencies" what lies under node_modules, site-packages, dist-packages;
 *   "app"          the rest: the program's own files and "files".
 * A native program outside /usr gets 2 (runtime, app); Python and Node 3 or
 * 4; .NET 3. An edit of the app rebuilds and uploads only the "app" layer.
 * Reproducible: the same inputs give the same digests (entry mtimes and the
 * config's "created" are $SOURCE_DATE_EPOCH, or 0). ENTRYPOINT = command;
 * ENV = PATH, METAPARTICLE_IN_CONTAINER=true and "env"; ExposedPorts = ports.
 *
 * Publishing: the OCI distribution API. Registries on localhost/127.0.0.1/
 * [::1] are spoken to over plain HTTP, all others over verified HTTPS. The
 * docker runner pulls from such a plain-HTTP registry as Docker does for
 * loopback registries; on Podman through its own pull API with
 * tlsVerify=false (its Docker-compatible pull cannot skip TLS).
 * Credentials, first found wins: the environment variables
 * METAPARTICLE_REGISTRY_USERNAME and METAPARTICLE_REGISTRY_PASSWORD; then the
 * docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json:
 * credHelpers, auths, credsStore, as `docker login` writes them). Basic and
 * Bearer-token authentication are supported.
 *
 * The docker runner talks to the Docker Engine API on $DOCKER_HOST
 * (unix:///path or tcp://host:port), else /var/run/docker.sock, else Podman's
 * /run/podman/podman.sock or $XDG_RUNTIME_DIR/podman/podman.sock. It loads the
 * image directly (no registry) or, when publishing, pulls the pushed
 * reference; removes containers of an earlier run with the same name; starts
 * containers <name>-0 .. <name>-(N-1) (N = jobSpec.count, shardSpec.shards or
 * replicas), labelled io.metaparticle.name=<name>, hostname = container name,
 * replica i publishing port p on host port p + i, with the nofile and nproc
 * limits of this process set explicitly (HostConfig.Ulimits; stock Podman
 * otherwise asks for more than many hosts allow); and prints each replica's
 * output lines prefixed "[<name>-i] " (stdout to stdout, stderr to stderr).
 *
 * The Kubernetes runner ("metaparticle" or "kubernetes") needs "publish" (a
 * cluster can only pull a pushed image) and a cluster configuration
 * (in-cluster, $KUBECONFIG or ~/.kube/config); it checks the API server
 * before building anything. It server-side applies (field manager
 * "metaparticle") a Service (LoadBalancer when "public", else ClusterIP; none
 * without ports) and a Deployment with "replicas", or a batch/v1 Job for
 * "jobSpec", all labelled app.kubernetes.io/name=<name> and
 * app.kubernetes.io/managed-by=metaparticle, every container with
 * METAPARTICLE_IN_CONTAINER=true; re-running updates them in place. It waits
 * for the rollout (image pull failures: MP_EREGISTRY; crash loops: MP_ERROR
 * with the pod's last log lines; no progress in 5 minutes or
 * $METAPARTICLE_ROLLOUT_TIMEOUT seconds: MP_ETIMEOUT), follows every pod's
 * log prefixed "[<pod>] ", and deletes what it applied on SIGINT/SIGTERM (or
 * when a Job finishes: *exit_code 0 if it succeeded, 1 if it failed).
 * "shardSpec" with this runner is MP_EINVAL until the shard pattern exists.
 */

/**
 * The program's main function, run inside the container by mp_containerize.
 * Its return value becomes *exit_code. Runs on the thread that called
 * mp_containerize.
 */
typedef int (*mp_main_fn)(void *user_data);

/**
 * *inside = 1 when this process runs in a container built by containerize:
 * the environment variable METAPARTICLE_IN_CONTAINER is "true" or "1" (any
 * case). "false", "0", anything else or unset: 0 (set it to false to force
 * "outside" in a container you run yourself).
 */
MP_EXTERN int mp_in_container(int *inside);

/**
 * Inside a container (mp_in_container): validate the options, run
 * main_fn(user_data), *exit_code = its result.
 *
 * Outside: build the image; push it when "publish"; run it with the runner;
 * stream the replicas' logs until SIGINT or SIGTERM, then stop and remove
 * what was started (unless "keepRunning") and return MP_OK with
 * *exit_code = 0. When every replica exits by itself (a job), return after
 * removing them, with *exit_code = the first non-zero exit code among them
 * (0 if all succeeded). With "dryRun": print the Kubernetes objects as YAML
 * documents and the image config in comments (see "dryRun") on stdout,
 * *exit_code = 0; nothing is pushed or run. Progress goes to stderr unless
 * "quiet".
 *
 * Signals: while it runs outside, mp_containerize installs SIGINT and SIGTERM
 * handlers (restored on return). The first signal starts the teardown; a
 * second one restores the previous handlers and re-raises the signal (so a
 * second Ctrl-C with default handlers ends the process at once, leaving the
 * containers). Only one mp_containerize may run per process (MP_ESTATE).
 *
 * Errors: MP_EINVAL (options; files that do not exist), MP_ERROR (a library
 * the program needs cannot be found), MP_EREGISTRY (registry unreachable,
 * credentials refused or missing, push denied), MP_EENGINE (container engine
 * unreachable or failing; the message says how to start one or set
 * DOCKER_HOST).
 */
MP_EXTERN int mp_containerize(const char *options_json, mp_main_fn main_fn, void *user_data, int *exit_code);

/**
 * What mp_containerize would build and create, without side effects (host
 * files are read; nothing is written, pushed or run). *out_json (free with
 * mp_free) is
 *   {"image": {"reference": "...", "digest": "sha256:<manifest digest>",
 *              "config": {OCI image config}, "manifest": {OCI manifest}},
 *    "docker": [{"name": "<name>-0", "body": {POST /containers/create body}}, ...],
 *    "kubernetes": [objects, in apply order],
 *    "warnings": ["..."]}   (always present; [] when there are none)
 * In "docker" bodies "Image" is the reference (the runner uses the engine's
 * image ID). "kubernetes" lists the objects the Kubernetes runner applies,
 * with the image pinned to its digest.
 */
MP_EXTERN int mp_containerize_render(const char *options_json, char **out_json);

#ifdef __cplusplus
}
#endif

#endif /* METAPARTICLE_H */
