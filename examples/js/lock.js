// The Lock example from the original @metaparticle/sync README: lock a lock
// named `test` and hold it for 45 seconds. Unchanged except that the hold
// time can be shortened with MP_EXAMPLE_HOLD_SECONDS (for tests and demos).
//
//   mp-sidecar &                     # or METAPARTICLE_SIDECAR=http://host:port
//   npm install && node lock.js
var holdSeconds = Number(process.env.MP_EXAMPLE_HOLD_SECONDS || 45);

// Import the library
var mp = require('@metaparticle/sync');

// Create a new lock.
var lock = new mp.Lock(
    // The name of the lock.
    'test',
    // This handler is called when the lock is acquired.
    () => {
       console.log('I have the lock!');
       console.log('Holding the lock for ' + holdSeconds + ' seconds');
       setTimeout(() => {
           // Unlock after 45 seconds.
           lock.unlock();
           console.log('Unlocked');
       }, holdSeconds * 1000);
    },
    // [optional] this handler is called when the lock is lost
    () => {
       console.log('I lost the lock!');
    });

// Kick off the lock, eventually this will call the callbacks above.
console.log('Attempting to lock');
lock.lock();
