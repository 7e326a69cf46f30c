// @metaparticle/sync: distributed locks and leader election through
// mp-sidecar. A thin layer over libmetaparticle's C ABI (see src/addon.cc):
// this file only shapes arguments and events into the JavaScript API of the
// original library (`new mp.Lock(name, onAcquired, onLost)` with lock() /
// unlock(); `new mp.Election(name, onLeader, onLost)` with run() /
// shutdown()), plus promise forms. Lock and election logic live in the core.
'use strict';

const native = require('./native');

const kNative = Symbol('metaparticle.native');
const kGate = Symbol('metaparticle.gate');

// On exit (process.exit() included, e.g. from a SIGTERM handler), give held
// locks and leadership up at once rather than leaving them to expire after
// their TTL. Blocks briefly; only busy handles are touched. (A crash or
// SIGKILL cannot do this: then the TTL frees them.)
process.on('exit', native.closeAll);

const LOCK_OPTIONS = new Set(['sidecarUrl', 'owner', 'ttlSeconds', 'onAcquired', 'onLost']);
const ELECTION_OPTIONS = new Set(['sidecarUrl', 'identity', 'ttlSeconds', 'onLeader', 'onLost']);

function typeError(message) {
  const e = new TypeError(message);
  e.code = 'ERR_INVALID_ARG_TYPE';
  return e;
}

// Wraps the handler events are delivered to. Node-API swallows exceptions
// thrown from native callbacks (Node 20 only warns, DEP0168), so an exception
// from a user callback is rethrown from a fresh tick, where it is an ordinary
// uncaught exception (process 'uncaughtException', or a crash).
function emitter(handler) {
  return (event) => {
    try {
      handler(event);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
    }
  };
}

function mpError(code, message, cause) {
  const e = new Error(message, cause === undefined ? undefined : { cause });
  e.code = code;
  e.errno = native.codes[code];
  return e;
}

function checkName(what, name) {
  // The core validates the content (Kubernetes object-name rules).
  if (typeof name !== 'string') throw typeError(`${what} name must be a string, not ${typeof name}`);
}

function checkCallback(what, fn) {
  if (fn !== undefined && fn !== null && typeof fn !== 'function') {
    throw typeError(`${what} must be a function, not ${typeof fn}`);
  }
  return fn || undefined;
}

function checkOptions(what, options, allowed) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw typeError(`${what} options must be an object`);
  for (const key of Object.keys(options)) {
    if (!allowed.has(key)) {
      throw typeError(`unknown ${what} option '${key}' (known: ${[...allowed].join(', ')})`);
    }
  }
  for (const key of ['sidecarUrl', 'owner', 'identity']) {
    if (options[key] !== undefined && typeof options[key] !== 'string') {
      throw typeError(`${what} option ${key} must be a string`);
    }
  }
  const ttl = options.ttlSeconds;
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 0)) {
    throw typeError(`${what} option ttlSeconds must be a non-negative integer (seconds), not ${ttl}`);
  }
  return options;
}

// Splits (name, fnA, fnB, options) / (name, options) constructor forms.
function parseArgs(what, args, names, allowed) {
  let [a, b, options] = args;
  if (a !== null && typeof a === 'object' && b === undefined && options === undefined) {
    options = a;
    a = undefined;
  }
  options = checkOptions(what, options, allowed);
  return {
    first: checkCallback(names[0], a !== undefined ? a : options[names[0]]),
    second: checkCallback(names[1], b !== undefined ? b : options[names[1]]),
    options,
  };
}

function timeoutMs(timeout) {
  if (timeout === undefined || timeout === null || timeout === Infinity) return -1;
  if (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0) {
    throw typeError(`timeout must be a non-negative number of milliseconds (or Infinity), not ${timeout}`);
  }
  return Math.min(Math.ceil(timeout), 0x7fffffff);
}

// Orders new acquisitions (lock(), acquire(), run()) after a release in
// progress (release(), unlock(), shutdown()): until that settles the native
// handle is still busy giving the old hold up. A release also cancels the
// acquisitions still waiting for an earlier one, as it cancels those already
// under way.
class Gate {
  constructor() {
    this.pending = null; // settles when the latest release has
    this.generation = 0; // counts releases
    this.waiting = 0; // starts waiting for `pending`
  }

  // start() now, or once the release in progress has settled; canceled()
  // instead if another release was asked for in the meantime.
  run(start, canceled) {
    if (!this.pending) return start();
    const generation = this.generation;
    this.waiting += 1;
    return this.pending.then(() => {
      this.waiting -= 1;
      return this.generation === generation ? start() : canceled();
    });
  }

  // Registers a release in progress. Returns whether starts were waiting
  // (they are canceled by it).
  closing(promise) {
    const hadWaiting = this.waiting > 0;
    this.generation += 1;
    const settled = promise.then(
      () => {},
      () => {}
    );
    this.pending = settled;
    settled.then(() => {
      if (this.pending === settled) this.pending = null;
    });
    return hadWaiting;
  }
}

/**
 * A distributed lock, held through mp-sidecar and renewed in the background.
 *
 *   new Lock(name, onAcquired?, onLost?, options?)
 *   new Lock(name, { onAcquired, onLost, sidecarUrl, owner, ttlSeconds })
 *
 * Without onLost, losing a held lock prints why and exits the process with
 * status 1 (a program that believes it holds a lost lock is unsafe).
 */
class Lock {
  constructor(name, ...args) {
    checkName('lock', name);
    const { first, second, options } = parseArgs('lock', args, ['onAcquired', 'onLost'], LOCK_OPTIONS);
    this._onAcquired = first;
    this._onLost = second;
    this[kGate] = new Gate();
    this[kNative] = new native.Lock(
      name,
      {
        sidecarUrl: options.sidecarUrl,
        owner: options.owner,
        ttlSeconds: options.ttlSeconds,
        exitOnLost: !second,
      },
      emitter((event) => this._event(event))
    );
  }

  _event(event) {
    if (event === 'acquired' && this._onAcquired) this._onAcquired.call(this);
    if (event === 'lost' && this._onLost) this._onLost.call(this);
  }

  /**
   * Start acquiring in the background (the original API). onAcquired is
   * called once the lock is held. Returns at once.
   */
  lock() {
    // Right after unlock(), this starts once the release has finished.
    this[kGate].run(
      () => this[kNative].lockAsync(),
      () => {}
    );
  }

  /**
   * Give the lock up (or stop a pending lock()). A waiter elsewhere gets it
   * within milliseconds. Returns a promise that always resolves; if the
   * sidecar could not be told, a warning is emitted and the lock frees at
   * its TTL (use release() to get that error instead).
   */
  unlock() {
    return this.release().then(
      () => undefined,
      (err) => {
        process.emitWarning(`unlock of lock '${this.name}': ${err.message}`, { code: err.code });
      }
    );
  }

  /**
   * Wait until the lock is held; resolves to its fencing token.
   * options.timeout: milliseconds (default: wait forever); on expiry the
   * promise rejects with code 'MP_ETIMEOUT'. options.signal: an AbortSignal;
   * aborting rejects with code 'MP_ECANCELED'.
   */
  acquire(options = {}) {
    if (options === null || typeof options !== 'object') throw typeError('acquire options must be an object');
    const ms = timeoutMs(options.timeout);
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('options.signal must be an AbortSignal');
    const canceled = () =>
      Promise.reject(mpError('MP_ECANCELED', `acquiring lock '${this.name}' was canceled by release()`));
    return this[kGate].run(() => {
      if (signal && signal.aborted) {
        return Promise.reject(mpError('MP_ECANCELED', `acquiring lock '${this.name}' was aborted`, signal.reason));
      }
      const p = this[kNative].acquire(ms);
      if (!signal) return p;
      // release() cancels an acquire in flight reliably (it also covers an
      // acquire whose thread has not started waiting yet). Once the acquire
      // has settled, an abort must not take the lock away from the caller.
      const onAbort = () => {
        if (this[kNative].acquiring) this.release().catch(() => {});
      };
      signal.addEventListener('abort', onAbort, { once: true });
      return p.finally(() => signal.removeEventListener('abort', onAbort));
    }, canceled);
  }

  /**
   * Give the lock up. Resolves to true if something was given up (a hold, a
   * pending lock(), or an acquire() in flight, which then rejects with
   * 'MP_ECANCELED'), false if there was nothing to release. Rejects when
   * the sidecar could not be told (the lock then frees at its TTL).
   */
  release() {
    const p = this[kNative].release();
    const hadWaiting = this[kGate].closing(p);
    return hadWaiting ? p.then(() => true) : p;
  }

  /** True while this handle holds the lock (renewals confirmed in time). */
  get held() {
    return this[kNative].held;
  }

  /** Fencing token of the current hold (strictly increasing per lock name), or null. */
  get token() {
    return this[kNative].token;
  }

  get name() {
    return this[kNative].name;
  }

  /** The holder identity this handle uses (default "<host name>/<pid>"). */
  get owner() {
    return this[kNative].owner;
  }
}

/**
 * Leader election: contend for `name`, lead for as long as this process is
 * healthy, contend again after losing leadership.
 *
 *   new Election(name, onLeader?, onLost?, options?)
 *   new Election(name, { onLeader, onLost, sidecarUrl, identity, ttlSeconds })
 */
class Election {
  constructor(name, ...args) {
    checkName('election', name);
    const { first, second, options } = parseArgs('election', args, ['onLeader', 'onLost'], ELECTION_OPTIONS);
    this._onLeader = first;
    this._onLost = second;
    this._name = name;
    this[kGate] = new Gate();
    this[kNative] = new native.Election(
      name,
      { sidecarUrl: options.sidecarUrl, identity: options.identity, ttlSeconds: options.ttlSeconds },
      emitter((event) => this._event(event))
    );
  }

  _event(event) {
    if (event === 'leader' && this._onLeader) this._onLeader.call(this);
    if (event === 'lost' && this._onLost) this._onLost.call(this);
  }

  /**
   * Contend for leadership until shutdown(). onLeader is called on becoming
   * leader, onLost when leadership ends for any reason but shutdown(). The
   * returned promise resolves once the election has stopped.
   */
  run() {
    // Right after shutdown(), this starts once that has finished; a later
    // shutdown() cancels it (it then resolves, having never run).
    return this[kGate].run(
      () => this[kNative].run(),
      () => undefined
    );
  }

  /**
   * Stop contending and give leadership up at once if held (onLost is not
   * called). Resolves once run() has finished.
   */
  shutdown() {
    const p = this[kNative].shutdown();
    this[kGate].closing(p);
    return p;
  }

  /** The current leader's identity as the sidecar sees it, or null. */
  leader() {
    return this[kNative].leader();
  }

  /** True while this candidate leads. */
  get isLeader() {
    return this[kNative].isLeader;
  }

  /** True between run() and the end of shutdown(). */
  get running() {
    return this[kNative].running;
  }

  get name() {
    return this._name;
  }
}

module.exports = {
  Lock,
  Election,
  /** Error codes by name, e.g. codes.MP_ETIMEOUT === -3 (errors carry both .code and .errno). */
  codes: Object.freeze({ ...native.codes }),
  /** Version of the loaded libmetaparticle. */
  version: native.version,
};
