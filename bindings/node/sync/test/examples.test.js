// The seed examples in examples/js run unmodified against this package, as
// `require('@metaparticle/sync')` from a project of their own.
//
// With MP_NODE_INSTALL_TEST=1 the project is made with a real
// `npm init -y && npm install <this package>` (which rebuilds the addon; set
// METAPARTICLE_LIB_DIR to reuse a built libmetaparticle); otherwise the
// package is linked into node_modules, which resolves the same way.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { before, after, describe, it } = require('node:test');

const { PKG_DIR, withTimeout, startSidecar, startChild, HANG_GUARD_MS } = require('./helpers');

const EXAMPLES = path.resolve(PKG_DIR, '..', '..', '..', 'examples', 'js');
const haveExamples = fs.existsSync(path.join(EXAMPLES, 'lock.js'));

let sidecar;
let project;

function npm(args, cwd) {
  const npmCli = process.env.npm_execpath || path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  return execFileSync(process.execPath, [npmCli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
}

describe('examples/js', { skip: !haveExamples && 'examples/js not found next to this package' }, () => {
  before(async () => {
    sidecar = await startSidecar();
    project = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-sync-examples-'));
    if (process.env.MP_NODE_INSTALL_TEST === '1') {
      npm(['init', '-y'], project);
      npm(['install', '--no-audit', '--no-fund', PKG_DIR], project);
    } else {
      fs.mkdirSync(path.join(project, 'node_modules', '@metaparticle'), { recursive: true });
      fs.symlinkSync(PKG_DIR, path.join(project, 'node_modules', '@metaparticle', 'sync'), 'dir');
    }
    for (const f of ['lock.js', 'election.js']) fs.copyFileSync(path.join(EXAMPLES, f), path.join(project, f));
  });

  after(async () => {
    if (sidecar) await sidecar.stop();
    if (project) fs.rmSync(project, { recursive: true, force: true });
  });

  function run(script, env) {
    return startChild(path.join(project, script), [], { METAPARTICLE_SIDECAR: sidecar.url, ...env }, { cwd: project });
  }

  it('require resolves to this package', () => {
    const resolved = execFileSync(process.execPath, ['-p', "require.resolve('@metaparticle/sync')"], {
      cwd: project,
      encoding: 'utf8',
    }).trim();
    assert.equal(fs.realpathSync(resolved), fs.realpathSync(path.join(PKG_DIR, 'lib', 'index.js')));
  });

  it('lock.js takes the lock, holds it, unlocks and exits', async () => {
    const c = run('lock.js', { MP_EXAMPLE_HOLD_SECONDS: '1' });
    const { code } = await withTimeout(c.exited, HANG_GUARD_MS, 'lock.js to exit');
    assert.equal(code, 0, c.stderr);
    assert.deepEqual(c.lines, ['Attempting to lock', 'I have the lock!', 'Holding the lock for 1 seconds', 'Unlocked']);
  });

  it('two lock.js processes take turns', async () => {
    const a = run('lock.js', { MP_EXAMPLE_HOLD_SECONDS: '6' });
    await a.waitFor(/^I have the lock!$/);
    const b = run('lock.js', { MP_EXAMPLE_HOLD_SECONDS: '1' });
    await b.waitFor(/^Attempting to lock$/);
    await new Promise((r) => setTimeout(r, 1000));
    // While a still holds it, b waits (checked only if a has not let go yet,
    // which a slow machine could make happen).
    if (!a.lines.includes('Unlocked')) assert.ok(!b.lines.includes('I have the lock!'), 'both held the lock');
    await b.waitFor(/^I have the lock!$/);
    for (const c of [a, b]) {
      const { code } = await withTimeout(c.exited, HANG_GUARD_MS, 'lock.js to exit');
      assert.equal(code, 0, c.stderr);
    }
  });

  it('election.js: one leads; when it shuts down the other takes over', async () => {
    const a = run('election.js');
    await a.waitFor(/^I am the leader$/);
    const b = run('election.js');
    // Let b contend before a leaves.
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!b.lines.includes('I am the leader'), 'two leaders at once');
    a.proc.kill('SIGTERM');
    const ra = await withTimeout(a.exited, HANG_GUARD_MS, 'election.js to exit after SIGTERM');
    assert.equal(ra.code, 0, a.stderr);
    assert.ok(a.lines.includes('Shut down'));
    await b.waitFor(/^I am the leader$/);
    b.proc.kill('SIGTERM');
    const rb = await withTimeout(b.exited, HANG_GUARD_MS, 'election.js to exit after SIGTERM');
    assert.equal(rb.code, 0, b.stderr);
  });

  it('election.js exits after MP_EXAMPLE_RUN_SECONDS', async () => {
    const c = run('election.js', { MP_EXAMPLE_RUN_SECONDS: '1' });
    const { code } = await withTimeout(c.exited, HANG_GUARD_MS, 'election.js to exit');
    assert.equal(code, 0, c.stderr);
    assert.deepEqual(c.lines, ['I am the leader', 'Shut down']);
  });
});
