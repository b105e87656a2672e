// The example consumer addon (consumer.c), built by `node-gyp rebuild` in this folder.
'use strict';
module.exports = require('./build/Release/abi_consumer.node');
