// The Election example from the original @metaparticle/sync README: leader
// election for a shard named `test`. Run several copies; one leads, and when
// it stops another takes over.
//
//   mp-sidecar &                     # or METAPARTICLE_SIDECAR=http://host:port
//   npm install && node election.js
var mp = require('@metaparticle/sync');

var election = new mp.Election(
    // Name of the election shard
    'test',
    // Event handler, called when a program becomes the leader.
    () => {
        console.log('I am the leader');
    },
    // Event handler, called when a program that was leader is no longer leader.
    () => {
        console.log('I lost the leader');
    });

election.run();

// Not in the original: leave the election cleanly (handing leadership on at
// once instead of after the TTL) on Ctrl-C / SIGTERM, or after
// MP_EXAMPLE_RUN_SECONDS seconds. The process exits once it has shut down.
function stop() {
    election.shutdown().then(() => console.log('Shut down'));
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
if (process.env.MP_EXAMPLE_RUN_SECONDS) {
    setTimeout(stop, Number(process.env.MP_EXAMPLE_RUN_SECONDS) * 1000);
}
