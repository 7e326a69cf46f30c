'use strict';

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, it } = require('node:test');

const mp = require('..');
const { uniqueName } = require('./helpers');

// A 127.0.0.1 port nobody listens on (bound, then closed again).
async function deadPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('errors', () => {
  it('exports the library version and the error codes', () => {
    assert.match(mp.version, /^\d+\.\d+\.\d+/);
    assert.equal(mp.codes.MP_OK, 0);
    assert.equal(mp.codes.MP_EINVAL, -2);
    assert.equal(mp.codes.MP_ESIDECAR, -5);
  });

  it('a bad lock name is an Error with code MP_EINVAL and a reason', () => {
    for (const bad of ['Bad_Name', '', '-leading-dash', 'a'.repeat(254)]) {
      assert.throws(
        () => new mp.Lock(bad),
        (err) => {
          assert.ok(err instanceof Error);
          assert.equal(err.code, 'MP_EINVAL', `name ${JSON.stringify(bad)}`);
          assert.equal(err.errno, -2);
          assert.ok(err.message.length > 0);
          return true;
        }
      );
    }
    assert.throws(() => new mp.Election('Not A Name'), { code: 'MP_EINVAL' });
  });

  it('a TTL the core rejects is MP_EINVAL', () => {
    assert.throws(() => new mp.Lock(uniqueName('ttl'), { ttlSeconds: 1 }), { code: 'MP_EINVAL', message: /ttl/ });
  });

  it('wrong argument types are TypeErrors', () => {
    assert.throws(() => new mp.Lock(42), TypeError);
    assert.throws(() => new mp.Lock('ok-name', 'not a function'), TypeError);
    assert.throws(() => new mp.Lock('ok-name', () => {}, 7), TypeError);
    assert.throws(() => new mp.Lock('ok-name', { sidecarURL: 'x' }), { name: 'TypeError', message: /sidecarURL/ });
    assert.throws(() => new mp.Lock('ok-name', { ttlSeconds: 2.5 }), TypeError);
    assert.throws(() => new mp.Election('ok-name', { owner: 'x' }), { message: /owner/ });
    const lock = new mp.Lock('ok-name');
    assert.throws(() => lock.acquire({ timeout: -1 }), TypeError);
    assert.throws(() => lock.acquire({ signal: {} }), TypeError);
  });

  it('an unreachable sidecar is MP_ESIDECAR naming its address', async () => {
    const port = await deadPort();
    const url = `http://127.0.0.1:${port}`;
    const lock = new mp.Lock(uniqueName('nosidecar'), { sidecarUrl: url });
    await assert.rejects(lock.acquire({ timeout: 2000 }), (err) => {
      assert.equal(err.code, 'MP_ESIDECAR');
      assert.equal(err.errno, mp.codes.MP_ESIDECAR);
      assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
      return true;
    });
    assert.equal(lock.held, false);

    const election = new mp.Election(uniqueName('nosidecar'), { sidecarUrl: url });
    await assert.rejects(election.leader(), { code: 'MP_ESIDECAR' });
  });

  it('METAPARTICLE_SIDECAR is where handles look by default', async () => {
    const port = await deadPort();
    const saved = process.env.METAPARTICLE_SIDECAR;
    process.env.METAPARTICLE_SIDECAR = `http://127.0.0.1:${port}`;
    try {
      const lock = new mp.Lock(uniqueName('envsidecar'));
      await assert.rejects(lock.acquire({ timeout: 1000 }), { code: 'MP_ESIDECAR', message: new RegExp(`:${port}`) });
    } finally {
      if (saved === undefined) delete process.env.METAPARTICLE_SIDECAR;
      else process.env.METAPARTICLE_SIDECAR = saved;
    }
  });
});
