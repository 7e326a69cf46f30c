// The seed Election example (Metaparticle/Sync for .NET Core), unchanged.
//
// Run against a sidecar:  mp-sidecar &   (or set METAPARTICLE_SIDECAR=http://host:port)
//                         dotnet run --project examples/csharp/ElectionExample
// Start several copies: one leads. Stop the leader (Ctrl-C kills it without a
// clean shutdown) and another leads once the leader's TTL has passed (15 s).
namespace ElectionExample
{
    using System;
    using System.Threading;
    using System.Threading.Tasks;
    using Metaparticle.Sync;

    public class ElectionMain {
        public static void Main(string[] args) {
            var election = new Election(
                "test",
                () => {
                    Console.WriteLine("I am the leader!");
                },
                () => {
                    Console.WriteLine("I lost the leader!");
                });
            Console.WriteLine("Waiting for election");
            election.Run();
        }
    }
}
