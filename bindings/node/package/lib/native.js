// Loads the compiled addon, with an error that says what to do when it is
// missing or cannot find libmetaparticle.
'use strict';

const path = require('node:path');

const addonPath = path.join(__dirname, '..', 'build', 'Release', 'metaparticle_package.node');

function load() {
  try {
    return require(addonPath);
  } catch (err) {
    const e = new Error(
      `@metaparticle/package: cannot load the native addon ${addonPath}: ${err.message}\n` +
        'It is built by `npm install` (scripts/install.js). Rebuild it with `npm rebuild @metaparticle/package` ' +
        'and check that output for errors.'
    );
    e.code = 'MP_EADDON';
    e.cause = err;
    throw e;
  }
}

module.exports = load();
