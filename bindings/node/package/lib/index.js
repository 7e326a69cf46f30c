// @metaparticle/package: containerize(options, main) for Node.js.
//
// Inside a container built by containerize (METAPARTICLE_IN_CONTAINER=true,
// which the image sets), containerize validates the options and runs main.
// Outside, it builds an OCI image of this very program (the node binary and
// its shared libraries, the app's directory with its node_modules, this
// package), pushes it when `publish`, runs it with the runner and streams the
// replicas' output until Ctrl-C, which removes them. The work is done by
// libmetaparticle's C++ core (mp_containerize) on a thread of its own, so the
// event loop stays free; the returned Promise settles when it is over.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const native = require('./native');

const PKG_DIR = path.resolve(__dirname, '..');

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// The main script, as node was asked to run it (absolute, symlinks resolved).
function mainScript() {
  const arg = process.argv[1];
  if (!arg || process.argv.length < 2) return null;
  try {
    return fs.realpathSync(path.resolve(arg));
  } catch {
    return null;
  }
}

// The app's root: the nearest directory above the script holding a
// package.json (so node_modules comes along), else the script's directory.
function appRoot(script) {
  for (let dir = path.dirname(script); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  return path.dirname(script);
}

function isInside(dir, parent) {
  const rel = path.relative(parent, dir);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

// A DNS label from the script's name ("web-app.js" -> "web-app").
function defaultName(script) {
  let n = path.basename(script).replace(/\.(c|m)?js$/i, '').toLowerCase();
  n = n.replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 63).replace(/-+$/, '');
  return n || 'app';
}

// The seed options plus what the core needs to package a Node program:
// command (node, the script, its arguments) and include (node, the app's
// directory, this package's runtime files when they live elsewhere, e.g.
// through an npm `file:` symlink).
function toCoreOptions(options) {
  if (options === undefined || options === null) options = {};
  if (!isPlainObject(options)) throw new TypeError('containerize: options must be an object');
  const out = {};
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) out[k] = v;
  }
  if (out.command === undefined) {
    const script = mainScript();
    if (!script) {
      const e = new Error(
        'containerize: no main script (node was started without one, e.g. `node -e` or a REPL); ' +
          'give "command" (and "include") explicitly'
      );
      e.code = 'MP_EINVAL';
      throw e;
    }
    const root = appRoot(script);
    out.command = [fs.realpathSync(process.execPath), script, ...process.argv.slice(2)];
    const include = [fs.realpathSync(process.execPath), root];
    if (!isInside(script, root)) include.push(script);
    const pkg = fs.realpathSync(PKG_DIR);
    if (!isInside(pkg, root)) {
      include.push(path.join(pkg, 'package.json'), path.join(pkg, 'lib'));
      const release = path.join(pkg, 'build', 'Release');
      for (const f of ['metaparticle_package.node', 'libmetaparticle.so.0']) {
        if (fs.existsSync(path.join(release, f))) include.push(path.join(release, f));
      }
    }
    out.include = [...include, ...(Array.isArray(out.include) ? out.include : out.include !== undefined ? [out.include] : [])];
    if (out.name === undefined) out.name = defaultName(script);
    if (out.workingDir === undefined) out.workingDir = root;
  }
  return out;
}

// As PID 1 in a container, node gets no default signal actions: `docker
// stop` (SIGTERM) would wait out its grace period and then SIGKILL. Exit with
// 128 + signal instead, unless the program handles the signal itself.
let pid1Handlers = false;
function exitOnTerminationAsPid1() {
  if (process.pid !== 1 || pid1Handlers) return;
  pid1Handlers = true;
  for (const [sig, num] of [['SIGTERM', 15], ['SIGINT', 2]]) {
    process.on(sig, () => {
      if (process.listenerCount(sig) <= 1) process.exit(128 + num);
    });
  }
}

function json(options) {
  return JSON.stringify(toCoreOptions(options));
}

/** True inside a container built by containerize (METAPARTICLE_IN_CONTAINER=true/1). */
function inContainer() {
  return native.inContainer();
}

/**
 * What containerize would build and create, without side effects:
 * {image: {reference, digest, config, manifest}, docker: [...], kubernetes: [...], warnings: [...]}
 * ("warnings" is always there, empty when there are none).
 */
function render(options) {
  return JSON.parse(native.render(json(options)));
}

/**
 * Inside a container: run main (its result, awaited, is the Promise's value).
 * Outside: build, push when asked, run and stream logs until Ctrl-C; the
 * Promise resolves with the exit code (0, or a job's first non-zero code).
 */
function containerize(options, main) {
  if (typeof options === 'function' && main === undefined) {
    main = options;
    options = {};
  }
  if (typeof main !== 'function') {
    return Promise.reject(new TypeError('containerize: main must be a function'));
  }
  let opts;
  try {
    opts = json(options);
    if (native.inContainer()) {
      native.validateInside(opts);
      exitOnTerminationAsPid1();
      return Promise.resolve().then(() => main());
    }
  } catch (err) {
    return Promise.reject(err);
  }
  return native.containerize(opts).then((code) => {
    if (code !== 0 && !process.exitCode) process.exitCode = code;
    return code;
  });
}

module.exports = { containerize, render, inContainer, version: native.version };
