'use strict';

const assert = require('node:assert/strict');
const { before, after, describe, it } = require('node:test');

const mp = require('..');
const { uniqueName, withTimeout, startSidecar, startChild, fixture, HANG_GUARD_MS } = require('./helpers');

let sidecar;

before(async () => {
  sidecar = await startSidecar();
  // Handles created without sidecarUrl (and child processes) use this.
  process.env.METAPARTICLE_SIDECAR = sidecar.url;
});

after(async () => {
  if (sidecar) await sidecar.stop();
});

describe('Lock (promise API)', () => {
  it('acquires and releases', async () => {
    const lock = new mp.Lock(uniqueName('basic'));
    assert.equal(lock.held, false);
    assert.equal(lock.token, null);

    const token = await lock.acquire({ timeout: 5000 });
    assert.equal(typeof token, 'number');
    assert.ok(token > 0, `token ${token} should be positive`);
    assert.equal(lock.held, true);
    assert.equal(lock.token, token);

    assert.equal(await lock.release(), true);
    assert.equal(lock.held, false);
    assert.equal(lock.token, null);
    // Nothing left to give up.
    assert.equal(await lock.release(), false);
  });

  it('exposes the name and a default owner of <host>/<pid>', () => {
    const name = uniqueName('ident');
    const lock = new mp.Lock(name);
    assert.equal(lock.name, name);
    assert.match(lock.owner, new RegExp(`/${process.pid}$`));
    assert.equal(new mp.Lock(name, { owner: 'custom-owner' }).owner, 'custom-owner');
  });

  it('fencing tokens strictly increase across holders', async () => {
    const name = uniqueName('token');
    const a = new mp.Lock(name, { owner: 'a' });
    const b = new mp.Lock(name, { owner: 'b' });
    const t1 = await a.acquire();
    await a.release();
    const t2 = await b.acquire();
    await b.release();
    const t3 = await a.acquire();
    await a.release();
    assert.ok(t1 < t2 && t2 < t3, `tokens ${t1}, ${t2}, ${t3} should increase`);
  });

  it('times out with MP_ETIMEOUT while someone else holds it', async () => {
    const name = uniqueName('timeout');
    const holder = new mp.Lock(name, { owner: 'holder' });
    const waiter = new mp.Lock(name, { owner: 'waiter' });
    await holder.acquire();
    try {
      await assert.rejects(waiter.acquire({ timeout: 300 }), (err) => {
        assert.ok(err instanceof Error);
        assert.equal(err.code, 'MP_ETIMEOUT');
        assert.equal(err.errno, mp.codes.MP_ETIMEOUT);
        assert.equal(err.errno, -3);
        assert.match(err.message, new RegExp(name));
        return true;
      });
      assert.equal(waiter.held, false);
      assert.equal(holder.held, true);
    } finally {
      await holder.release();
    }
  });

  it('a waiter gets the lock as soon as the holder releases it', async () => {
    const name = uniqueName('handoff');
    const holder = new mp.Lock(name, { owner: 'holder' });
    const waiter = new mp.Lock(name, { owner: 'waiter' });
    const t1 = await holder.acquire();
    const waiting = waiter.acquire({ timeout: HANG_GUARD_MS });
    let settled = false;
    waiting.finally(() => {
      settled = true;
    });
    // The waiter is blocked while the lock is held...
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(settled, false);
    // ...and gets it after the release (well within the TTL of 15 s: the
    // release clears the holder instead of letting it expire).
    await holder.release();
    const t2 = await waiting;
    assert.ok(t2 > t1);
    assert.equal(waiter.held, true);
    await waiter.release();
  });

  it('release() cancels an acquire() in flight with MP_ECANCELED', async () => {
    const name = uniqueName('cancel');
    const holder = new mp.Lock(name, { owner: 'holder' });
    const waiter = new mp.Lock(name, { owner: 'waiter' });
    await holder.acquire();
    const waiting = assert.rejects(waiter.acquire(), { code: 'MP_ECANCELED' });
    const released = await waiter.release();
    assert.equal(released, true);
    await waiting;
    assert.equal(waiter.held, false);
    await holder.release();
    // The handle is usable again.
    await waiter.acquire({ timeout: 5000 });
    await waiter.release();
  });

  it('release() also cancels an acquire() still waiting for an earlier release()', async () => {
    const name = uniqueName('queued');
    const lock = new mp.Lock(name);
    await lock.acquire();
    const first = lock.release();
    const queued = assert.rejects(lock.acquire(), { code: 'MP_ECANCELED' }); // waits for `first`
    const second = lock.release();
    await queued;
    await first; // which of the two concurrent releases gives the hold up is not defined
    assert.equal(await second, true); // it (also) gave the queued acquire() up
    assert.equal(lock.held, false);
    // Nobody holds it: a single attempt by someone else succeeds.
    const other = new mp.Lock(name, { owner: 'other' });
    await other.acquire({ timeout: 0 });
    await other.release();
  });

  it('an AbortSignal cancels acquire()', async () => {
    const name = uniqueName('abort');
    const holder = new mp.Lock(name, { owner: 'holder' });
    const waiter = new mp.Lock(name, { owner: 'waiter' });
    await holder.acquire();
    const ac = new AbortController();
    const waiting = waiter.acquire({ signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(waiting, { code: 'MP_ECANCELED' });
    await assert.rejects(waiter.acquire({ signal: ac.signal }), { code: 'MP_ECANCELED' });
    await holder.release();
  });

  it('acquiring twice on one handle is MP_ESTATE', async () => {
    const lock = new mp.Lock(uniqueName('twice'));
    await lock.acquire();
    await assert.rejects(lock.acquire({ timeout: 100 }), { code: 'MP_ESTATE' });
    assert.throws(() => lock.lock(), { code: 'MP_ESTATE' });
    assert.equal(lock.held, true);
    await lock.release();
  });
});

describe('Lock (seed callback API)', () => {
  it('lock() calls onAcquired; unlock() hands the lock on', async () => {
    const name = uniqueName('seed');
    let lock;
    const acquired = new Promise((resolve) => {
      lock = new mp.Lock(name, resolve, () => assert.fail('lock should not be lost'));
    });
    assert.equal(lock.lock(), undefined);
    await withTimeout(acquired, HANG_GUARD_MS, 'onAcquired');
    assert.equal(lock.held, true);
    assert.ok(lock.token > 0);

    const other = new mp.Lock(name, { owner: 'other' });
    await assert.rejects(other.acquire({ timeout: 0 }), { code: 'MP_ETIMEOUT' });
    await lock.unlock();
    assert.equal(lock.held, false);
    await other.acquire({ timeout: 5000 });
    await other.release();
  });

  it('unlock() stops a pending lock(): onAcquired is never called', async () => {
    const name = uniqueName('pending');
    const holder = new mp.Lock(name, { owner: 'holder' });
    await holder.acquire();
    let called = false;
    const lock = new mp.Lock(name, () => {
      called = true;
    });
    lock.lock();
    await lock.unlock();
    await holder.release();
    // Give a wrongly still-pending acquisition the chance to complete.
    const probe = new mp.Lock(name, { owner: 'probe' });
    await probe.acquire({ timeout: 5000 });
    await probe.release();
    assert.equal(called, false);
    assert.equal(lock.held, false);
  });

  it('lock() right after unlock() acquires again', async () => {
    const name = uniqueName('relock');
    let count = 0;
    let resolveSecond;
    const second = new Promise((r) => {
      resolveSecond = r;
    });
    const lock = new mp.Lock(name, function () {
      count += 1;
      if (count === 1) {
        this.unlock();
        this.lock();
      } else {
        resolveSecond();
      }
    });
    lock.lock();
    await withTimeout(second, HANG_GUARD_MS, 'the second onAcquired');
    assert.equal(count, 2);
    assert.equal(lock.held, true);
    await lock.unlock();
  });
});

describe('Lock across processes', () => {
  it('a lock held by another process excludes us until it releases', async () => {
    const name = uniqueName('proc');
    const child = startChild(fixture('holder.js'), [name]);
    try {
      const [, childToken] = await child.waitFor(/^ACQUIRED (\d+)$/, 'ACQUIRED');
      const lock = new mp.Lock(name);
      await assert.rejects(lock.acquire({ timeout: 500 }), { code: 'MP_ETIMEOUT' });

      const waiting = lock.acquire({ timeout: HANG_GUARD_MS });
      child.send('release');
      await child.waitFor(/^RELEASED true$/, 'RELEASED');
      const token = await waiting;
      assert.ok(token > Number(childToken), `our token ${token} should exceed the child's ${childToken}`);
      // The child released its only lock: it exits by itself.
      const { code } = await withTimeout(child.exited, HANG_GUARD_MS, 'the child to exit');
      assert.equal(code, 0);
      await lock.release();
    } finally {
      await child.kill();
    }
  });

  it('a lock held by a killed process frees after its TTL', async () => {
    const name = uniqueName('crash');
    const child = startChild(fixture('holder.js'), [name, '--ttl', '3']);
    try {
      await child.waitFor(/^ACQUIRED/, 'ACQUIRED');
      await child.kill('SIGKILL'); // no release: only the TTL frees it
      const lock = new mp.Lock(name);
      const token = await lock.acquire({ timeout: HANG_GUARD_MS });
      assert.ok(token > 0);
      await lock.release();
    } finally {
      await child.kill();
    }
  });
});
