// @metaparticle/package: render(), option errors, the inside-the-container
// path, and end to end: examples/js/containerize.js (the seed example) built,
// pushed to a docker-registry on 127.0.0.1 and run as 2 replicas under
// Podman's Docker-compatible service (`podman system service` on a socket in
// a temporary directory, with its own configuration and vfs storage, as in
// tests/package/test_package_podman.cpp), then torn down with SIGINT.
// The end-to-end test skips, saying why, without podman/runc/docker-registry
// or when host ports 8080/8081 (fixed by the seed example) are taken.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PKG = path.resolve(__dirname, '..');
const REPO = path.resolve(PKG, '..', '..', '..');
const EXAMPLE_DIR = path.join(REPO, 'examples', 'js');
const EXAMPLE = path.join(EXAMPLE_DIR, 'containerize.js');
const NODE = fs.realpathSync(process.execPath);

function tmpdir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// A small app in a temporary directory that uses this package.
function app(source) {
  const dir = tmpdir('mp-nodeapp-');
  fs.writeFileSync(path.join(dir, 'package.json'), '{"name": "web-app", "private": true}\n');
  const script = path.join(dir, 'web-app.js');
  fs.writeFileSync(script, `const mp = require(${JSON.stringify(PKG)});\n${source}\n`);
  return { dir, script };
}

function runNode(script, args, env) {
  return spawnSync(NODE, [script, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120000,
  });
}

test('render: ENTRYPOINT is node + the script, ENV and ExposedPorts set', () => {
  const { dir, script } = app('console.log(JSON.stringify(mp.render({ ports: [8080], replicas: 2 })));');
  try {
    const p = runNode(script, ['--flag', 'x y'], { METAPARTICLE_IN_CONTAINER: 'false' });
    assert.strictEqual(p.status, 0, p.stderr);
    const out = JSON.parse(p.stdout);
    const cfg = out.image.config.config;
    assert.deepStrictEqual(cfg.Entrypoint, [NODE, script, '--flag', 'x y']);
    assert.ok(cfg.Env.includes('METAPARTICLE_IN_CONTAINER=true'), cfg.Env.join(' '));
    assert.deepStrictEqual(cfg.ExposedPorts, { '8080/tcp': {} });
    assert.strictEqual(cfg.WorkingDir, dir);
    assert.strictEqual(out.image.reference, 'web-app:latest');
    assert.deepStrictEqual(out.docker.map((d) => d.name), ['web-app-0', 'web-app-1']);
    assert.deepStrictEqual(out.docker[1].body.HostConfig.PortBindings['8080/tcp'], [
      { HostIp: '127.0.0.1', HostPort: '8081' },
    ]);
    // Libraries, then node itself (from /usr, or from its own installation:
    // nvm, /usr/local), then the app: an edit to the app rebuilds only the
    // last, small layer.
    const prefix = path.dirname(path.dirname(NODE));
    const installed = NODE.startsWith('/usr/') || fs.existsSync(path.join(prefix, 'include', 'node', 'node.h')) ||
      fs.existsSync(path.join(prefix, 'lib', 'node_modules', 'npm'));
    const layers = installed ? ['runtime', 'system', 'app'] : ['runtime', 'app'];
    assert.deepStrictEqual(
      out.image.config.history.map((h) => h.created_by),
      layers.map((name) => `metaparticle containerize: ${name} layer`),
    );
    assert.strictEqual(out.image.manifest.layers.length, layers.length);
    // the same keys from every binding: "warnings" is there even when empty
    assert.ok(Array.isArray(out.warnings), JSON.stringify(Object.keys(out)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown option is an error naming it', async () => {
  const { dir, script } = app(`
    try { mp.render({ ports: [8080], replicaz: 2 }); console.log('no error'); }
    catch (e) { console.log(e.code, e.message); }
    mp.containerize({ keepRunnin: true }, () => console.log('main ran'))
      .then(() => console.log('resolved'), (e) => console.log('rejected', e.code, e.message));
  `);
  try {
    const p = runNode(script, [], { METAPARTICLE_IN_CONTAINER: 'false', DOCKER_HOST: 'unix:///nonexistent.sock' });
    assert.strictEqual(p.status, 0, p.stderr);
    const [first, second] = p.stdout.trim().split('\n');
    assert.match(first, /^MP_EINVAL .*"replicaz"/);
    assert.match(second, /^rejected MP_EINVAL .*"keepRunnin"/);
    assert.doesNotMatch(p.stdout, /main ran/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('inside a container, containerize runs main (and still validates options)', () => {
  const { dir, script } = app(`
    console.log('inside', mp.inContainer());
    mp.containerize({ ports: [8080], replicas: 3 }, () => { console.log('main ran with', process.argv.slice(2).join(',')); return 7; })
      .then((v) => console.log('resolved', v))
      .then(() => mp.containerize({ bogus: 1 }, () => console.log('must not run')))
      .catch((e) => console.log('rejected', e.code, e.message));
  `);
  try {
    const p = runNode(script, ['x'], { METAPARTICLE_IN_CONTAINER: 'true', DOCKER_HOST: 'unix:///nonexistent.sock' });
    assert.strictEqual(p.status, 0, p.stderr);
    const lines = p.stdout.trim().split('\n');
    assert.deepStrictEqual(lines.slice(0, 3), ['inside true', 'main ran with x', 'resolved 7']);
    assert.match(lines[3], /^rejected MP_EINVAL .*"bogus"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------

function have(prog) {
  return spawnSync('sh', ['-c', `command -v ${prog}`]).status === 0;
}

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function request(opts, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ timeout: 10000, ...opts }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

async function startRegistry() {
  const root = tmpdir('mp-nodereg-');
  fs.writeFileSync(
    path.join(root, 'config.yml'),
    `version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: ${root}/data\n` +
      `http:\n  addr: 127.0.0.1:0\n  secret: mptest-secret\n`
  );
  const logPath = path.join(root, 'registry.log');
  const log = fs.openSync(logPath, 'w');
  const proc = spawn('docker-registry', ['serve', path.join(root, 'config.yml')], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const port = await waitFor(
    'docker-registry',
    () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(fs.readFileSync(logPath, 'utf8'));
      if (!m && proc.exitCode !== null) throw new Error(`docker-registry exited:\n${fs.readFileSync(logPath, 'utf8')}`);
      return m && Number(m[1]);
    },
    20000
  );
  return { proc, port, root };
}

async function startPodman(insecure) {
  const d = fs.mkdtempSync('/tmp/mp-nodepod-'); // short: the socket path must fit in 108 bytes
  fs.writeFileSync(
    path.join(d, 'containers.conf'),
    '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n' +
      `[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n` +
      `events_logfile_path = "${d}/events.log"\ntmp_dir = "${d}/tmp"\n[network]\nnetwork_config_dir = "${d}/networks"\n`
  );
  fs.writeFileSync(path.join(d, 'storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = "${d}/root"\nrunroot = "${d}/run"\n`);
  fs.writeFileSync(
    path.join(d, 'registries.conf'),
    `unqualified-search-registries = []\n[[registry]]\nlocation = "${insecure}"\ninsecure = true\n`
  );
  const sock = path.join(d, 'podman.sock');
  const env = {
    CONTAINERS_CONF: path.join(d, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: path.join(d, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path.join(d, 'registries.conf'),
  };
  const log = fs.openSync(path.join(d, 'podman.log'), 'w');
  const proc = spawn('podman', ['system', 'service', '--time=0', `unix://${sock}`], {
    env: { ...process.env, ...env },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const api = (method, p) => request({ socketPath: sock, method, path: '/v1.41' + p });
  await waitFor(
    'podman service',
    async () => {
      if (proc.exitCode !== null) throw new Error(`podman exited:\n${fs.readFileSync(path.join(d, 'podman.log'), 'utf8')}`);
      try {
        return (await api('GET', '/_ping')).status === 200;
      } catch {
        return false;
      }
    },
    30000
  );
  const containers = async (name) => {
    const f = encodeURIComponent(JSON.stringify({ label: [`io.metaparticle.name${name ? '=' + name : ''}`] }));
    const r = await api('GET', `/containers/json?all=1&filters=${f}`);
    assert.strictEqual(r.status, 200, r.body);
    return JSON.parse(r.body);
  };
  const images = async () => JSON.parse((await api('GET', '/images/json')).body);
  const stop = async () => {
    try {
      for (const c of await containers()) await api('DELETE', `/containers/${c.Id}?force=1`);
    } catch {
      // best effort before stopping the service
    }
    proc.kill('SIGTERM');
    await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(20000)]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    fs.rmSync(d, { recursive: true, force: true });
  };
  return { sock, containers, images, stop };
}

function httpGet(port) {
  return waitFor(
    `HTTP on 127.0.0.1:${port}`,
    async () => {
      try {
        const r = await request({ host: '127.0.0.1', port, path: '/', method: 'GET' });
        return r.status === 200 ? r.body : null;
      } catch {
        return null;
      }
    },
    60000
  );
}

test('end to end: the seed example builds, pushes, runs 2 replicas under Podman, tears down on SIGINT', async (t) => {
  for (const prog of ['podman', 'runc', 'docker-registry']) {
    if (!have(prog)) return t.skip(`${prog} is not installed`);
  }
  if (!fs.existsSync(path.join(EXAMPLE_DIR, 'node_modules', '@metaparticle', 'package'))) {
    return t.skip('examples/js has no node_modules/@metaparticle/package (run `npm install` there)');
  }
  if (!(await portFree(8080)) || !(await portFree(8081))) {
    return t.skip('host ports 8080/8081 (fixed by the seed example) are in use');
  }
  const registry = await startRegistry();
  let podman;
  let ex;
  const cache = tmpdir('mp-nodecache-');
  try {
    podman = await startPodman(`127.0.0.1:${registry.port}`);
    const t0 = Date.now();
    ex = spawn(NODE, [EXAMPLE], {
      cwd: EXAMPLE_DIR,
      env: {
        ...process.env,
        METAPARTICLE_IN_CONTAINER: 'false',
        MP_REPOSITORY: `127.0.0.1:${registry.port}/mp`,
        DOCKER_HOST: `unix://${podman.sock}`,
        METAPARTICLE_CACHE_DIR: cache,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = [];
    const err = [];
    const stamps = {};
    const collect = (stream, into) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (c) => {
        buf += c;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          into.push(line);
          if (!(line in stamps)) stamps[line] = Date.now() - t0;
        }
      });
    };
    collect(ex.stdout, out);
    collect(ex.stderr, err);
    const dump = () => `stdout:\n${out.join('\n')}\nstderr:\n${err.join('\n')}`;
    const expect = (line) =>
      waitFor(
        JSON.stringify(line) + '\n' + dump(),
        () => {
          if (ex.exitCode !== null) throw new Error(`example exited (${ex.exitCode}) before ${JSON.stringify(line)}\n${dump()}`);
          return out.includes(line);
        },
        600000
      );

    for (let i = 0; i < 2; i++) await expect(`[containerize-${i}] server up on 8080`);
    const upMs = Date.now() - t0;
    assert.strictEqual(await httpGet(8080), 'Hello World: hostname: containerize-0\n');
    assert.strictEqual(await httpGet(8081), 'Hello World: hostname: containerize-1\n');
    await expect('[containerize-1] /');
    assert.strictEqual((await podman.containers('containerize')).length, 2);

    // The image was pushed: the registry has the manifest.
    const m = await request({
      host: '127.0.0.1',
      port: registry.port,
      method: 'HEAD',
      path: '/v2/mp/containerize/manifests/latest',
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.strictEqual(m.status, 200);
    const size = Number(execFileSync('du', ['-sb', path.join(registry.root, 'data')], { encoding: 'utf8' }).split('\t')[0]);

    ex.kill('SIGINT'); // Ctrl-C
    const code = await new Promise((r) => (ex.exitCode !== null ? r(ex.exitCode) : ex.once('exit', (c) => r(c))));
    assert.strictEqual(code, 0, dump());
    assert.deepStrictEqual(await podman.containers('containerize'), []);
    assert.ok(err.some((l) => /removed 2 container/.test(l)), dump());
    const progress = err.filter((l) => !l.startsWith('['));
    t.diagnostic(`replicas serving after ${upMs} ms (build + push + pull + start, cold layer cache)`);
    t.diagnostic(`registry storage after the push: ${(size / 1e6).toFixed(1)} MB (compressed layers + config + manifest)`);
    for (const l of progress) t.diagnostic(`${stamps[l]} ms: ${l}`);
  } finally {
    if (ex && ex.exitCode === null) ex.kill('SIGKILL');
    if (podman) await podman.stop();
    // wait for it, so it is reaped here (not left a zombie under init)
    const gone = new Promise((r) => (registry.proc.exitCode !== null ? r() : registry.proc.once('exit', r)));
    registry.proc.kill('SIGTERM');
    await Promise.race([gone, sleep(10000)]);
    fs.rmSync(registry.root, { recursive: true, force: true });
    fs.rmSync(cache, { recursive: true, force: true });
  }
});
