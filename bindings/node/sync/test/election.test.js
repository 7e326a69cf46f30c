'use strict';

const assert = require('node:assert/strict');
const { before, after, describe, it } = require('node:test');

const mp = require('..');
const { uniqueName, withTimeout, startSidecar, startChild, fixture, HANG_GUARD_MS } = require('./helpers');

let sidecar;

before(async () => {
  sidecar = await startSidecar();
  process.env.METAPARTICLE_SIDECAR = sidecar.url;
});

after(async () => {
  if (sidecar) await sidecar.stop();
});

// An election whose callbacks are recorded and can be awaited.
function candidate(name, identity, ttlSeconds) {
  const events = [];
  const waiters = [];
  const record = (what) => () => {
    events.push(what);
    for (const w of waiters.splice(0)) w();
  };
  const election = new mp.Election(name, record('leader'), record('lost'), { identity, ttlSeconds });
  const until = (pred, what) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => (pred() ? resolve() : waiters.push(check));
        check();
      }),
      HANG_GUARD_MS,
      `${identity}: ${what}`
    );
  return { election, events, until };
}

describe('Election', () => {
  it('the seed shape: run() elects, leader() names us, shutdown() stops', async () => {
    const name = uniqueName('elect');
    const a = candidate(name, 'node-a');
    const done = a.election.run();
    assert.equal(a.election.running, true);
    await a.until(() => a.events.includes('leader'), 'leader');
    assert.equal(a.election.isLeader, true);
    assert.equal(await a.election.leader(), 'node-a');
    await a.election.shutdown();
    await done; // run() settles once stopped
    assert.equal(a.election.running, false);
    assert.equal(a.election.isLeader, false);
    assert.equal(await a.election.leader(), null); // leadership given up at once
    assert.deepEqual(a.events, ['leader']); // no onLost for a shutdown
  });

  it('fails over to the other candidate when the leader shuts down', async () => {
    const name = uniqueName('failover');
    const a = candidate(name, 'node-a');
    const b = candidate(name, 'node-b');
    const runA = a.election.run();
    await a.until(() => a.events.includes('leader'), 'leader');
    const runB = b.election.run();
    assert.equal(b.election.isLeader, false);
    assert.equal(await b.election.leader(), 'node-a');

    await a.election.shutdown();
    await b.until(() => b.events.includes('leader'), 'leader after failover');
    assert.equal(b.election.isLeader, true);
    assert.equal(await b.election.leader(), 'node-b');

    // And back: a runs again and takes over once b stops.
    const runA2 = a.election.run();
    await b.election.shutdown();
    await a.until(() => a.events.filter((e) => e === 'leader').length === 2, 'leader again');
    await a.election.shutdown();
    await Promise.all([runA, runB, runA2]);
  });

  it('fails over when the leading process is killed', async () => {
    const name = uniqueName('killed');
    const child = startChild(fixture('elector.js'), [name, 'child', '3']);
    try {
      await child.waitFor(/^LEADER child$/, 'child leading');
      const b = candidate(name, 'parent', 3);
      const run = b.election.run();
      assert.equal(await b.election.leader(), 'child');
      await child.kill('SIGKILL'); // no release: the TTL runs out
      await b.until(() => b.events.includes('leader'), 'leader after the leader died');
      assert.equal(await b.election.leader(), 'parent');
      await b.election.shutdown();
      await run;
    } finally {
      await child.kill();
    }
  });

  it('a shutdown() right after run() stops it', async () => {
    const e = candidate(uniqueName('quick'), 'quick');
    const run = e.election.run();
    await e.election.shutdown();
    await withTimeout(run, HANG_GUARD_MS, 'run() to return');
    assert.equal(e.election.running, false);
  });

  it('once shutdown() resolves, run() has returned and can be called again', async () => {
    const e = candidate(uniqueName('rerun'), 'rerun');
    let returned = false;
    const run = e.election.run().then(() => {
      returned = true;
    });
    await e.until(() => e.events.length === 1, 'leader');
    await e.election.shutdown();
    assert.equal(e.election.running, false);
    await run;
    assert.equal(returned, true);
    const again = e.election.run();
    await e.until(() => e.events.length === 2, 'leader again');
    assert.deepEqual(e.events, ['leader', 'leader']);
    await e.election.shutdown();
    await again;
  });

  it('shutdown() cancels a run() still waiting for an earlier shutdown()', async () => {
    const e = candidate(uniqueName('queued-run'), 'queued');
    const first = e.election.run();
    await e.until(() => e.events.length === 1, 'leader');
    const stopped = e.election.shutdown();
    const queued = e.election.run(); // starts only once `stopped` settles...
    await e.election.shutdown(); // ...which this cancels
    await Promise.all([first, stopped, queued]);
    assert.equal(e.election.running, false);
    assert.equal(await e.election.leader(), null);
    assert.deepEqual(e.events, ['leader']);
  });

  it('run() twice is MP_ESTATE', async () => {
    const e = candidate(uniqueName('twice'), 'twice');
    const run = e.election.run();
    await assert.rejects(e.election.run(), { code: 'MP_ESTATE' });
    await e.election.shutdown();
    await run;
  });
});
