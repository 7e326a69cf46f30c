// The build step shared by @metaparticle/sync and @metaparticle/package.
// Each package's scripts/install.js only finds this file and calls it with
// the package directory and the npm lifecycle event:
//
// install (npm install / npm rebuild):
//  1. Find libmetaparticle (the C++ core behind the C ABI), in this order:
//       - METAPARTICLE_LIB_DIR (a directory holding libmetaparticle.so.0 or
//         libmetaparticle.so, e.g. a CMake build's libmetaparticle/ folder),
//         with the header from METAPARTICLE_INCLUDE_DIR, the source tree, or
//         <lib dir>/../include;
//       - bundled/ inside the package (a tarball made by `npm pack`): the
//         library, the headers and a prebuilt addon; the prebuilt addon is
//         used when it loads, else the addon is compiled against bundled/;
//       - a Metaparticle source tree (METAPARTICLE_SOURCE_DIR, or the one the
//         package sits in): the core is built with CMake through
//         scripts/build-core.cmake into <tree>/build-core, one build that both
//         packages (and the Python and .NET builds) share;
//       - an installed library found through pkg-config (`metaparticle.pc`).
//  2. Stage metaparticle.h, node-addon-api's headers (vendored: npm does not
//     install the dependencies of a linked folder) and the library in .native/.
//  3. Build the addon with node-gyp (binding.gyp), which copies the library
//     next to the .node file; RPATH $ORIGIN finds it there.
//  4. Load the addon once, so a broken build fails the install instead of the
//     first require().
//
// prepack (npm pack): do the install, then put what a tarball needs to
// install offline and without a source tree into bundled/, and this script
// into scripts/. postpack removes them again.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

// The SONAME of libmetaparticle (major version 0); binding.gyp links this name.
const SONAME = 'libmetaparticle.so.0';
const NAPI_HEADERS = ['napi.h', 'napi-inl.h', 'napi-inl.deprecated.h'];
// Where a packed tarball keeps this script (scripts/install.js looks there first).
const PACKED_SCRIPT = path.join('scripts', 'build-addon.js');

function main(pkgDir, event) {
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  // @metaparticle/sync -> metaparticle_sync (binding.gyp's target_name)
  const addonName = `metaparticle_${pkg.name.split('/').pop()}`;
  const ctx = {
    pkgDir,
    name: pkg.name,
    addonName,
    nativeDir: path.join(pkgDir, '.native'),
    bundledDir: path.join(pkgDir, 'bundled'),
    addonPath: path.join(pkgDir, 'build', 'Release', `${addonName}.node`),
  };
  if (process.platform !== 'linux') fail(ctx, `only Linux is supported (this is ${process.platform})`);
  switch (event) {
    case 'install':
      install(ctx);
      break;
    case 'prepack':
      prepack(ctx);
      break;
    case 'postpack':
      postpack(ctx);
      break;
    default:
      fail(ctx, `unknown step '${event}' (expected install, prepack or postpack)`);
  }
}

function log(ctx, msg) {
  console.log(`${ctx.name}: ${msg}`);
}

function fail(ctx, msg) {
  console.error(`${ctx.name}: install failed: ${msg}`);
  process.exit(1);
}

function run(ctx, cmd, args, opts = {}) {
  log(ctx, `$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) {
    if (r.error.code === 'ENOENT') fail(ctx, `'${cmd}' was not found on PATH; it is needed to build the addon.`);
    fail(ctx, `running ${cmd}: ${r.error.message}`);
  }
  if (r.status !== 0) fail(ctx, `'${[cmd, ...args].join(' ')}' exited with status ${r.status}`);
}

function isSourceTree(dir) {
  return (
    fs.existsSync(path.join(dir, 'include', 'metaparticle.h')) &&
    fs.existsSync(path.join(dir, 'libmetaparticle')) &&
    fs.existsSync(path.join(dir, 'CMakeLists.txt'))
  );
}

function findSourceTree(ctx) {
  if (process.env.METAPARTICLE_SOURCE_DIR) {
    const dir = path.resolve(process.env.METAPARTICLE_SOURCE_DIR);
    if (!isSourceTree(dir)) fail(ctx, `METAPARTICLE_SOURCE_DIR=${dir} is not a Metaparticle source tree (no include/metaparticle.h)`);
    return dir;
  }
  // The package's real location: bindings/node/<pkg> of a clone (npm links a
  // folder, so this is the clone itself, not node_modules).
  const real = fs.realpathSync(ctx.pkgDir);
  const tree = path.resolve(real, '..', '..', '..');
  return isSourceTree(tree) ? tree : null;
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

function fromLibDir(ctx, libDir, srcTree) {
  const lib = findLibrary(libDir);
  if (!lib) fail(ctx, `METAPARTICLE_LIB_DIR=${libDir} holds neither ${SONAME} nor libmetaparticle.so`);
  const candidates = [
    process.env.METAPARTICLE_INCLUDE_DIR,
    srcTree && path.join(srcTree, 'include'),
    cmakeSourceOf(libDir) && path.join(cmakeSourceOf(libDir), 'include'),
    path.join(libDir, '..', 'include'),
  ].filter(Boolean);
  const includeDir = candidates.find((d) => fs.existsSync(path.join(d, 'metaparticle.h')));
  if (!includeDir) fail(ctx, `metaparticle.h not found (looked in ${candidates.join(', ')}); set METAPARTICLE_INCLUDE_DIR`);
  return { lib, header: path.join(includeDir, 'metaparticle.h'), how: `prebuilt library in ${libDir}` };
}

function fromBundled(ctx) {
  const lib = path.join(ctx.bundledDir, 'lib', SONAME);
  const header = path.join(ctx.bundledDir, 'include', 'metaparticle.h');
  if (!fs.existsSync(lib) || !fs.existsSync(header)) return null;
  return { lib, header, how: 'the library bundled in this package' };
}

function buildWithCMake(ctx, srcTree) {
  const buildDir = process.env.METAPARTICLE_CORE_BUILD_DIR
    ? path.resolve(process.env.METAPARTICLE_CORE_BUILD_DIR)
    : path.join(srcTree, 'build-core');
  run(ctx, 'cmake', [
    `-DSOURCE_DIR=${srcTree}`,
    `-DBUILD_DIR=${buildDir}`,
    '-DTARGETS=metaparticle',
    '-P', path.join(srcTree, 'scripts', 'build-core.cmake'),
  ]);
  const lib = findLibrary(path.join(buildDir, 'libmetaparticle'));
  if (!lib) fail(ctx, `CMake finished but ${SONAME} is not in ${path.join(buildDir, 'libmetaparticle')}`);
  return { lib, header: path.join(srcTree, 'include', 'metaparticle.h'), how: `built from ${srcTree} in ${buildDir}` };
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

function locate(ctx) {
  const srcTree = findSourceTree(ctx);
  if (process.env.METAPARTICLE_LIB_DIR) return fromLibDir(ctx, path.resolve(process.env.METAPARTICLE_LIB_DIR), srcTree);
  const bundled = fromBundled(ctx);
  if (bundled) return bundled;
  if (srcTree) return buildWithCMake(ctx, srcTree);
  const pc = fromPkgConfig();
  if (pc) return pc;
  fail(
    ctx,
    'libmetaparticle was not found. Install from a Metaparticle clone (npm install <clone>/bindings/node/...), ' +
      'or from a tarball made by `npm pack` or scripts/release.sh (it bundles the library), or install the library ' +
      '(so that `pkg-config metaparticle` works), or set METAPARTICLE_LIB_DIR to a directory holding libmetaparticle.so.'
  );
}

// node-addon-api's headers: bundled/include in a packed tarball, the vendored
// copy (bindings/node/vendor/node-addon-api) in a source tree.
function napiIncludeDir(ctx) {
  const candidates = [
    path.join(ctx.bundledDir, 'include'),
    path.join(fs.realpathSync(ctx.pkgDir), '..', 'vendor', 'node-addon-api'),
  ];
  const dir = candidates.find((d) => fs.existsSync(path.join(d, 'napi.h')));
  if (!dir) fail(ctx, `node-addon-api's napi.h not found (looked in ${candidates.join(', ')}); the package is incomplete`);
  return dir;
}

// Copies only when the content differs, so that an unchanged header or
// library keeps its time stamp and make (node-gyp build) has nothing to redo.
function copyIfChanged(from, to) {
  const data = fs.readFileSync(from);
  if (fs.existsSync(to) && !fs.lstatSync(to).isSymbolicLink() && data.equals(fs.readFileSync(to))) return;
  fs.rmSync(to, { force: true });
  fs.writeFileSync(to, data, { mode: fs.statSync(from).mode });
}

function stage(ctx, { lib, header, how }) {
  log(ctx, `using libmetaparticle: ${how}`);
  const include = path.join(ctx.nativeDir, 'include');
  fs.mkdirSync(include, { recursive: true });
  fs.mkdirSync(path.join(ctx.nativeDir, 'lib'), { recursive: true });
  copyIfChanged(header, path.join(include, 'metaparticle.h'));
  const napiDir = napiIncludeDir(ctx);
  for (const h of NAPI_HEADERS) copyIfChanged(path.join(napiDir, h), path.join(include, h));
  // Copy the real file (not a symlink) under its SONAME: that is the name the
  // addon records as DT_NEEDED and looks for next to itself.
  copyIfChanged(fs.realpathSync(lib), path.join(ctx.nativeDir, 'lib', SONAME));
}

function nodeGyp(ctx) {
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
  if (!found) fail(ctx, 'node-gyp was not found (it ships with npm); install it with `npm install -g node-gyp`');
  return found;
}

// libmetaparticle's version as the addon reports it, or null with the reason.
function tryLoad(addon) {
  const r = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(addon)}).version)`], {
    encoding: 'utf8',
  });
  return r.status === 0 ? { version: r.stdout.trim() } : { error: r.stderr.trim() };
}

// A tarball's prebuilt addon, when it loads here (same libc and libstdc++ or
// newer): no compiler needed.
function usePrebuilt(ctx) {
  const prebuilt = path.join(ctx.bundledDir, `${ctx.addonName}.node`);
  const lib = path.join(ctx.bundledDir, 'lib', SONAME);
  if (process.env.METAPARTICLE_LIB_DIR || !fs.existsSync(prebuilt) || !fs.existsSync(lib)) return false;
  const outDir = path.dirname(ctx.addonPath);
  fs.rmSync(path.join(ctx.pkgDir, 'build'), { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(prebuilt, ctx.addonPath);
  fs.copyFileSync(lib, path.join(outDir, SONAME));
  const loaded = tryLoad(ctx.addonPath);
  if (loaded.version) {
    log(ctx, `using the prebuilt addon (libmetaparticle ${loaded.version})`);
    return true;
  }
  log(ctx, `the prebuilt addon does not load here, compiling it instead:\n${loaded.error}`);
  fs.rmSync(path.join(ctx.pkgDir, 'build'), { recursive: true, force: true });
  return false;
}

function install(ctx) {
  if (usePrebuilt(ctx)) return;
  stage(ctx, locate(ctx));
  // Build against the headers installed with this node (Debian's nodejs,
  // official tarballs) instead of downloading them, unless told otherwise.
  const gypFlags = [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
    gypFlags.push(`--nodedir=${prefix}`);
  }
  // configure + build, not rebuild: make redoes only what changed, so npm pack
  // after an install (scripts/release.sh) does not compile the addon again.
  const gyp = nodeGyp(ctx);
  run(ctx, process.execPath, [gyp, 'configure', ...gypFlags], { cwd: ctx.pkgDir });
  run(ctx, process.execPath, [gyp, 'build', ...gypFlags], { cwd: ctx.pkgDir });
  const loaded = tryLoad(ctx.addonPath);
  if (!loaded.version) fail(ctx, `the addon was built but does not load:\n${loaded.error}`);
  log(ctx, `built ${path.relative(ctx.pkgDir, ctx.addonPath)} (libmetaparticle ${loaded.version})`);
}

function prepack(ctx) {
  postpack(ctx); // never pack what an earlier pack left behind
  if (!findSourceTree(ctx) && !process.env.METAPARTICLE_LIB_DIR) {
    fail(ctx, 'npm pack needs the package inside a Metaparticle source tree (or METAPARTICLE_LIB_DIR), to bundle the library');
  }
  // A failed pack must not leave bundled/ behind: an install would prefer it.
  let bundledComplete = false;
  process.on('exit', () => {
    if (!bundledComplete) postpack(ctx);
  });
  install(ctx);
  const napiLicense = path.join(napiIncludeDir(ctx), 'LICENSE.md');
  const include = path.join(ctx.bundledDir, 'include');
  fs.mkdirSync(path.join(ctx.bundledDir, 'lib'), { recursive: true });
  fs.mkdirSync(include, { recursive: true });
  for (const h of ['metaparticle.h', ...NAPI_HEADERS]) {
    fs.copyFileSync(path.join(ctx.nativeDir, 'include', h), path.join(include, h));
  }
  fs.copyFileSync(napiLicense, path.join(include, 'node-addon-api-LICENSE.md'));
  fs.copyFileSync(path.join(ctx.nativeDir, 'lib', SONAME), path.join(ctx.bundledDir, 'lib', SONAME));
  fs.copyFileSync(ctx.addonPath, path.join(ctx.bundledDir, `${ctx.addonName}.node`));
  fs.copyFileSync(__filename, path.join(ctx.pkgDir, PACKED_SCRIPT));
  bundledComplete = true;
  log(ctx, 'bundled the library, the headers and the prebuilt addon for the tarball');
}

function postpack(ctx) {
  fs.rmSync(ctx.bundledDir, { recursive: true, force: true });
  fs.rmSync(path.join(ctx.pkgDir, PACKED_SCRIPT), { force: true });
}

module.exports = main;
