#!/usr/bin/env node
// The build step of `npm install @metaparticle/package`:
//
//  1. Find libmetaparticle (the C++ core behind the C ABI) and stage its
//     header and shared library in .native/. In order of preference:
//       - METAPARTICLE_LIB_DIR (a directory holding libmetaparticle.so.0 or
//         libmetaparticle.so, e.g. a CMake build's libmetaparticle/ folder),
//         with the header from METAPARTICLE_INCLUDE_DIR, the source tree, or
//         <lib dir>/../include;
//       - a Metaparticle source tree (METAPARTICLE_SOURCE_DIR, or the one this
//         package sits in: bindings/node/package): built with CMake into
//         .native/cmake, so the library matches the sources next to it;
//       - an installed library found through pkg-config (`metaparticle.pc`).
//  2. Build the addon with node-gyp (binding.gyp), which copies the library
//     next to metaparticle_package.node; RPATH $ORIGIN finds it there.
//  3. Load the addon once, so a broken build fails the install instead of the
//     first require().
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const nativeDir = path.join(pkgDir, '.native');
// The SONAME of libmetaparticle (major version 0); binding.gyp links this name.
const SONAME = 'libmetaparticle.so.0';

function log(msg) {
  console.log(`@metaparticle/package: ${msg}`);
}

function fail(msg) {
  console.error(`@metaparticle/package: install failed: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  log(`$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) {
    if (r.error.code === 'ENOENT') fail(`'${cmd}' was not found on PATH; it is needed to build libmetaparticle.`);
    fail(`running ${cmd}: ${r.error.message}`);
  }
  if (r.status !== 0) fail(`'${[cmd, ...args].join(' ')}' exited with status ${r.status}`);
}

function isSourceTree(dir) {
  return (
    fs.existsSync(path.join(dir, 'include', 'metaparticle.h')) &&
    fs.existsSync(path.join(dir, 'libmetaparticle')) &&
    fs.existsSync(path.join(dir, 'CMakeLists.txt'))
  );
}

function findSourceTree() {
  if (process.env.METAPARTICLE_SOURCE_DIR) {
    const dir = path.resolve(process.env.METAPARTICLE_SOURCE_DIR);
    if (!isSourceTree(dir)) fail(`METAPARTICLE_SOURCE_DIR=${dir} is not a Metaparticle source tree (no include/metaparticle.h)`);
    return dir;
  }
  for (let dir = path.dirname(pkgDir); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (isSourceTree(dir)) return dir;
  }
  return null;
}

function findLibrary(libDir) {
  for (const name of [SONAME, 'libmetaparticle.so']) {
    const p = path.join(libDir, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

// The source tree of the CMake build a library directory belongs to, if any.
function cmakeSourceOf(libDir) {
  for (let dir = libDir; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const cache = path.join(dir, 'CMakeCache.txt');
    if (!fs.existsSync(cache)) continue;
    const m = /^metaparticle_SOURCE_DIR:STATIC=(.*)$/m.exec(fs.readFileSync(cache, 'utf8'));
    return m ? m[1].trim() : null;
  }
  return null;
}

function fromLibDir(libDir, srcTree) {
  const lib = findLibrary(libDir);
  if (!lib) fail(`METAPARTICLE_LIB_DIR=${libDir} holds neither ${SONAME} nor libmetaparticle.so`);
  const candidates = [
    process.env.METAPARTICLE_INCLUDE_DIR,
    srcTree && path.join(srcTree, 'include'),
    cmakeSourceOf(libDir) && path.join(cmakeSourceOf(libDir), 'include'),
    path.join(libDir, '..', 'include'),
  ].filter(Boolean);
  const includeDir = candidates.find((d) => fs.existsSync(path.join(d, 'metaparticle.h')));
  if (!includeDir) fail(`metaparticle.h not found (looked in ${candidates.join(', ')}); set METAPARTICLE_INCLUDE_DIR`);
  return { lib, header: path.join(includeDir, 'metaparticle.h'), how: `prebuilt library in ${libDir}` };
}

function buildWithCMake(srcTree) {
  const buildDir = path.join(nativeDir, 'cmake');
  const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL || String(Math.max(1, Math.min(os.cpus().length, 4)));
  run('cmake', [
    '-S', srcTree,
    '-B', buildDir,
    '-DCMAKE_BUILD_TYPE=Release',
    '-DMP_BUILD_TESTS=OFF',
    '-DMP_BUILD_EXAMPLES=OFF',
    '-DMP_BUILD_BENCH=OFF',
  ]);
  run('cmake', ['--build', buildDir, '--target', 'metaparticle', '--parallel', jobs]);
  const lib = findLibrary(path.join(buildDir, 'libmetaparticle'));
  if (!lib) fail(`CMake finished but ${SONAME} is not in ${path.join(buildDir, 'libmetaparticle')}`);
  return { lib, header: path.join(srcTree, 'include', 'metaparticle.h'), how: `built from ${srcTree}` };
}

function fromPkgConfig() {
  const q = (v) => spawnSync('pkg-config', [`--variable=${v}`, 'metaparticle'], { encoding: 'utf8' });
  const libdir = q('libdir');
  const includedir = q('includedir');
  if (libdir.status !== 0 || includedir.status !== 0) return null;
  const lib = findLibrary(libdir.stdout.trim());
  const header = path.join(includedir.stdout.trim(), 'metaparticle.h');
  if (!lib || !fs.existsSync(header)) return null;
  return { lib, header, how: `installed library (pkg-config) in ${libdir.stdout.trim()}` };
}

function locate() {
  const srcTree = findSourceTree();
  if (process.env.METAPARTICLE_LIB_DIR) return fromLibDir(path.resolve(process.env.METAPARTICLE_LIB_DIR), srcTree);
  if (srcTree) return buildWithCMake(srcTree);
  const pc = fromPkgConfig();
  if (pc) return pc;
  fail(
    'libmetaparticle was not found. Either install it (cmake --install on a Metaparticle build, so that ' +
      '`pkg-config metaparticle` works), set METAPARTICLE_LIB_DIR to a directory holding libmetaparticle.so, ' +
      'or set METAPARTICLE_SOURCE_DIR to a Metaparticle source tree to build it from.'
  );
}

function stage({ lib, header, how }) {
  log(`using libmetaparticle: ${how}`);
  fs.mkdirSync(path.join(nativeDir, 'include'), { recursive: true });
  fs.mkdirSync(path.join(nativeDir, 'lib'), { recursive: true });
  fs.copyFileSync(header, path.join(nativeDir, 'include', 'metaparticle.h'));
  // Copy the real file (not a symlink) under its SONAME: that is the name the
  // addon records as DT_NEEDED and looks for next to itself.
  const dest = path.join(nativeDir, 'lib', SONAME);
  fs.rmSync(dest, { force: true });
  fs.copyFileSync(fs.realpathSync(lib), dest);
}

function nodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package; try npm's bundled copy below
  }
  if (process.env.npm_execpath) {
    candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  candidates.push(path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const found = candidates.find((p) => p && fs.existsSync(p));
  if (!found) fail('node-gyp was not found (it ships with npm); install it with `npm install -g node-gyp`');
  return found;
}

function main() {
  if (process.platform !== 'linux') fail(`only Linux is supported (this is ${process.platform})`);
  stage(locate());
  const gypArgs = [nodeGyp(), 'rebuild'];
  // Build against the headers installed with this node (Debian's nodejs,
  // official tarballs) instead of downloading them, unless told otherwise.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
    gypArgs.push(`--nodedir=${prefix}`);
  }
  run(process.execPath, gypArgs, { cwd: pkgDir });
  const addon = path.join(pkgDir, 'build', 'Release', 'metaparticle_package.node');
  const check = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(addon)}).version)`], {
    encoding: 'utf8',
  });
  if (check.status !== 0) fail(`the addon was built but does not load:\n${check.stderr}`);
  log(`built ${path.relative(pkgDir, addon)} (libmetaparticle ${check.stdout.trim()})`);
}

main();
