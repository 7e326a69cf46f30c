// Shared test plumbing: a real mp-sidecar on a random 127.0.0.1 port, child
// Node processes that use the package, and waiting helpers.
'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const PKG_DIR = path.resolve(__dirname, '..');
const FIXTURES = path.join(__dirname, 'fixtures');

// Generous guard against hangs; never a speed assertion.
const HANG_GUARD_MS = 30000;

function sidecarBin() {
  const bin = process.env.MP_SIDECAR_BIN;
  if (!bin) throw new Error('set MP_SIDECAR_BIN to the mp-sidecar executable (e.g. build/sidecar/mp-sidecar)');
  return bin;
}

let nameCounter = 0;
// A lock name no other test (or earlier run against the same sidecar) uses.
function uniqueName(prefix) {
  nameCounter += 1;
  return `${prefix}-${process.pid}-${nameCounter}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

// Starts mp-sidecar on 127.0.0.1:0; resolves to { url, proc, stop(), kill() }.
async function startSidecar(extraArgs = []) {
  const proc = spawn(sidecarBin(), ['--listen', '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const rl = readline.createInterface({ input: proc.stdout });
  const firstLine = new Promise((resolve, reject) => {
    rl.once('line', resolve);
    proc.once('error', reject);
    exited.then(({ code, signal }) => reject(new Error(`mp-sidecar exited (${code ?? signal}) before listening: ${stderr}`)));
  });
  const line = await withTimeout(firstLine, HANG_GUARD_MS, 'mp-sidecar to start');
  const m = /listening on (http:\/\/\S+)/.exec(line);
  if (!m) {
    proc.kill('SIGKILL');
    throw new Error(`unexpected first line from mp-sidecar: ${line}`);
  }
  const stopWith = async (signal) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return exited;
  };
  return {
    url: m[1],
    proc,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
  };
}

// A child `node` process running a fixture (or any script), with line-based
// stdout: waitFor(regex) resolves to the first matching line (match array).
function startChild(script, args = [], env = {}, options = {}) {
  const proc = spawn(process.execPath, [script, ...args], {
    cwd: options.cwd || PKG_DIR,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = [];
  const waiters = [];
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      const m = w.re.exec(line);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const child = {
    proc,
    lines,
    get stderr() {
      return stderr;
    },
    exited,
    waitFor(re, what = String(re)) {
      for (const line of lines) {
        const m = re.exec(line);
        if (m) return Promise.resolve(m);
      }
      const p = new Promise((resolve, reject) => {
        waiters.push({ re, resolve });
        exited.then(({ code, signal }) =>
          reject(new Error(`child exited (${code ?? signal}) before printing ${what}; stdout:\n${lines.join('\n')}\nstderr:\n${stderr}`))
        );
      });
      return withTimeout(p, HANG_GUARD_MS, what);
    },
    send(line) {
      proc.stdin.write(`${line}\n`);
    },
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  return child;
}

function fixture(name) {
  return path.join(FIXTURES, name);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { PKG_DIR, HANG_GUARD_MS, uniqueName, withTimeout, startSidecar, startChild, fixture, sleep };
