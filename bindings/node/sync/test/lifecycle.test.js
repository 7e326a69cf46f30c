// Process lifetime and loss: held locks and running elections keep the
// process alive, idle ones do not; losses are reported (or, without a
// handler, end the process with status 1).
'use strict';

const assert = require('node:assert/strict');
const { afterEach, describe, it } = require('node:test');

const mp = require('..');
const { uniqueName, withTimeout, startSidecar, startChild, fixture, sleep, HANG_GUARD_MS } = require('./helpers');

// Each test gets its own sidecar: several of them kill it.
let sidecar;
let children = [];

async function setup() {
  sidecar = await startSidecar();
  return { METAPARTICLE_SIDECAR: sidecar.url };
}

function child(script, args, env) {
  const c = startChild(fixture(script), args, env);
  children.push(c);
  return c;
}

afterEach(async () => {
  await Promise.all(children.map((c) => c.kill()));
  children = [];
  if (sidecar) await sidecar.stop();
  sidecar = undefined;
});

async function exitOf(c) {
  return withTimeout(c.exited, HANG_GUARD_MS, 'the child process to exit by itself');
}

describe('process lifetime', () => {
  it('the seed Lock example exits by itself after unlock()', async () => {
    const env = await setup();
    const c = child('seed-lock.js', [uniqueName('seedlock')], env);
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
    assert.deepEqual(c.lines, ['Attempting to lock', 'I have the lock!', 'Holding the lock for 1 seconds', 'Unlocked']);
  });

  it('the seed Election example exits by itself after shutdown()', async () => {
    const env = await setup();
    const c = child('seed-election.js', [uniqueName('seedelect')], env);
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
    assert.deepEqual(c.lines, ['I am the leader', 'Shut down']);
  });

  it('idle, timed-out, released and shut-down handles do not keep it alive', async () => {
    const env = await setup();
    const c = child('idle.js', [uniqueName('idle')], env);
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
    assert.deepEqual(c.lines, ['TIMEOUT MP_ETIMEOUT', 'DONE']);
  });

  it('an exception thrown by a callback is an uncaught exception', async () => {
    const env = await setup();
    const c = child('thrower.js', [uniqueName('thrower')], env);
    const { code } = await exitOf(c);
    assert.equal(code, 1);
    assert.match(c.stderr, /Error: thrown from onAcquired/);
  });

  it('process.exit() gives held locks and leadership up at once', async () => {
    const env = await setup();
    const lockName = uniqueName('exit-lock');
    const electionName = uniqueName('exit-el');
    const c = child('exiter.js', [lockName, electionName], env);
    await c.waitFor(/^HOLDING$/);
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
    // Both were taken with a 60 s TTL: only a release frees them now.
    const lock = new mp.Lock(lockName, { sidecarUrl: sidecar.url });
    assert.ok((await lock.acquire({ timeout: 0 })) > 0);
    await lock.release();
    const probe = new mp.Election(electionName, { sidecarUrl: sidecar.url });
    assert.equal(await probe.leader(), null);
  });

  it('terminating worker threads that hold locks neither crashes nor leaks the locks', async () => {
    const env = await setup();
    const c = child('workers.js', [uniqueName('wt-lock'), uniqueName('wt-el')], env);
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
    const [line] = c.lines;
    assert.match(line, /^TOKEN \d+$/);
    // Three workers held it before us (tokens 1..3), each given up at teardown.
    assert.ok(Number(line.split(' ')[1]) >= 4, line);
  });

  it('a held lock keeps the process alive until released', async () => {
    const env = await setup();
    const c = child('holder.js', [uniqueName('alive')], env);
    await c.waitFor(/^ACQUIRED/);
    await sleep(1500);
    assert.equal(c.proc.exitCode, null, 'the holder exited while holding the lock');
    c.send('release');
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
  });

  it('a running election keeps the process alive until shutdown()', async () => {
    const env = await setup();
    const name = uniqueName('alive-el');
    // A leader elsewhere, so the child is a follower: waiting alone must
    // keep it alive too.
    const leader = new mp.Election(name, { identity: 'other', sidecarUrl: sidecar.url });
    const leaderRun = leader.run();
    const c = child('elector.js', [name, 'follower'], env);
    await c.waitFor(/^RUNNING$/);
    await sleep(1500);
    assert.equal(c.proc.exitCode, null, 'the candidate exited while its election ran');
    c.send('shutdown');
    const { code } = await exitOf(c);
    assert.equal(code, 0, c.stderr);
    assert.ok(c.lines.includes('SHUTDOWN'));
    assert.ok(!c.lines.includes('LEADER follower'));
    await leader.shutdown();
    await leaderRun;
  });
});

describe('loss', () => {
  it('onLost is called when the sidecar goes away', async () => {
    await setup();
    let lock;
    const lost = new Promise((resolve) => {
      lock = new mp.Lock(uniqueName('lost'), undefined, resolve, { sidecarUrl: sidecar.url, ttlSeconds: 3 });
    });
    const token = await lock.acquire();
    assert.ok(token > 0);
    await sidecar.kill();
    await withTimeout(lost, HANG_GUARD_MS, 'onLost');
    assert.equal(lock.held, false);
    assert.equal(lock.token, null);
    assert.equal(await lock.release(), false);
  });

  it('without onLost, a loss ends the process with status 1 and says why', async () => {
    const env = await setup();
    const name = uniqueName('lost-exit');
    const c = child('holder.js', [name, '--no-on-lost', '--ttl', '3'], env);
    await c.waitFor(/^ACQUIRED/);
    await sidecar.kill();
    const { code } = await exitOf(c);
    assert.equal(code, 1);
    assert.match(c.stderr, new RegExp(`lost lock '${name}'`));
  });

  it("a leader's onLost is called when the sidecar goes away, and shutdown() still works", async () => {
    await setup();
    const events = [];
    let notify;
    const election = new mp.Election(
      uniqueName('lost-el'),
      () => {
        events.push('leader');
        notify();
      },
      () => {
        events.push('lost');
        notify();
      },
      { sidecarUrl: sidecar.url, ttlSeconds: 3 }
    );
    const next = () =>
      withTimeout(
        new Promise((r) => {
          notify = r;
        }),
        HANG_GUARD_MS,
        'an election event'
      );
    let event = next();
    const run = election.run();
    await event;
    event = next();
    await sidecar.kill();
    await event;
    assert.deepEqual(events, ['leader', 'lost']);
    assert.equal(election.isLeader, false);
    // It keeps contending against the dead sidecar; shutdown() ends that.
    await election.shutdown();
    await withTimeout(run, HANG_GUARD_MS, 'run() to return');
  });
});
