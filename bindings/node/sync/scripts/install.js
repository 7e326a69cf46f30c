#!/usr/bin/env node
// npm's install, prepack and postpack steps of this package. The work is done
// by one script shared with the other Metaparticle Node package:
// bindings/node/common/install.js in a source tree, copied to
// scripts/build-addon.js inside a packed tarball (see its header).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const packed = path.join(__dirname, 'build-addon.js');
const shared = path.join(__dirname, '..', '..', 'common', 'install.js');
const script = fs.existsSync(packed) ? packed : shared;
require(script)(path.resolve(__dirname, '..'), process.env.npm_lifecycle_event || process.argv[2] || 'install');
