// The seed Lock example (Metaparticle/Sync for .NET Core), unchanged except
// that the 45-second hold can be shortened for demos and tests with the
// environment variable MP_EXAMPLE_HOLD_SECONDS.
//
// Run against a sidecar:  mp-sidecar &   (or set METAPARTICLE_SIDECAR=http://host:port)
//                         dotnet run --project examples/csharp/LockExample
// Start it twice: the second copy waits until the first releases the lock.
namespace LockExample
{
    using System;
    using System.Threading.Tasks;
    using Metaparticle.Sync;

    public class LockMain {
        public static void Main(string[] args) {
            Console.WriteLine("Locking");
            var l = new Lock("test");
            l.WaitOne();
            Console.WriteLine("Acquired lock, waiting for " + HoldSeconds() + " seconds.");
            Task.Delay(HoldSeconds() * 1000).Wait();
            l.Release();
            Console.WriteLine("Lock released.");
        }

        // 45 seconds, as in the seed, unless MP_EXAMPLE_HOLD_SECONDS says otherwise.
        static int HoldSeconds() {
            var s = Environment.GetEnvironmentVariable("MP_EXAMPLE_HOLD_SECONDS");
            return int.TryParse(s, out var n) && n >= 0 ? n : 45;
        }
    }
}
