// Type definitions for @metaparticle/sync.

/** Errors from the library carry the MP_* code by name and by number. */
export interface MetaparticleError extends Error {
  /** e.g. 'MP_ETIMEOUT', 'MP_ESIDECAR', 'MP_EINVAL' */
  code: string;
  /** the numeric MP_* code, e.g. -3 for MP_ETIMEOUT */
  errno: number;
}

export interface LockOptions {
  /** Base URL of mp-sidecar. Default: $METAPARTICLE_SIDECAR, else http://127.0.0.1:13131 */
  sidecarUrl?: string;
  /** Holder identity. Default: "<host name>/<pid>" (handles in one process share it). */
  owner?: string;
  /** Lock TTL in seconds (at least 3). Default: 15. */
  ttlSeconds?: number;
  /** Called once the lock is held after lock(). */
  onAcquired?: (this: Lock) => void;
  /** Called when a held lock is lost. Without it, a loss exits the process (status 1). */
  onLost?: (this: Lock) => void;
}

export interface AcquireOptions {
  /** Milliseconds to wait; default forever. Expiry rejects with code 'MP_ETIMEOUT'. */
  timeout?: number;
  /** Aborting rejects the wait with code 'MP_ECANCELED'. */
  signal?: AbortSignal;
}

export class Lock {
  constructor(name: string, onAcquired?: (this: Lock) => void, onLost?: (this: Lock) => void, options?: LockOptions);
  constructor(name: string, options: LockOptions);

  /** Start acquiring in the background; onAcquired is called once held. */
  lock(): void;
  /** Give the lock up (or stop a pending lock()). Never rejects; failures become process warnings. */
  unlock(): Promise<void>;
  /** Wait until held; resolves to the fencing token. */
  acquire(options?: AcquireOptions): Promise<number>;
  /** Give the lock up; true if something was given up, false if nothing was held. */
  release(): Promise<boolean>;

  /** True while this handle holds the lock. */
  readonly held: boolean;
  /** Fencing token of the current hold (strictly increasing per lock name), or null. */
  readonly token: number | null;
  readonly name: string;
  readonly owner: string;
}

export interface ElectionOptions {
  /** Base URL of mp-sidecar. Default: $METAPARTICLE_SIDECAR, else http://127.0.0.1:13131 */
  sidecarUrl?: string;
  /** This candidate's identity. Default: "<host name>/<pid>". */
  identity?: string;
  /** Leadership TTL in seconds (at least 3). Default: 15. */
  ttlSeconds?: number;
  onLeader?: (this: Election) => void;
  onLost?: (this: Election) => void;
}

export class Election {
  constructor(name: string, onLeader?: (this: Election) => void, onLost?: (this: Election) => void, options?: ElectionOptions);
  constructor(name: string, options: ElectionOptions);

  /** Contend until shutdown(); resolves once stopped. */
  run(): Promise<void>;
  /** Stop contending, giving leadership up at once; resolves once run() has finished. */
  shutdown(): Promise<void>;
  /** The current leader's identity as the sidecar sees it, or null. */
  leader(): Promise<string | null>;

  readonly isLeader: boolean;
  readonly running: boolean;
  readonly name: string;
}

/** MP_* error codes by name, e.g. codes.MP_ETIMEOUT === -3. */
export const codes: Readonly<Record<string, number>>;
/** Version of the loaded libmetaparticle. */
export const version: string;
