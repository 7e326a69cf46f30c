// Test helper: a second process that uses a lock, driven by the tests over
// stdin/stdout. The sidecar comes from METAPARTICLE_SIDECAR (so the tests also
// cover that default).
//
//   hold NAME            acquire (WaitOne), print "acquired TOKEN", wait for a
//                        line on stdin, release, print "released".
//   try NAME             one attempt (TryWait): print "busy" or "acquired TOKEN"
//                        (then release).
//   hold-until-lost NAME acquire with a 3 s TTL and no OnLost handler, print
//                        "acquired TOKEN", then sleep: when the lock is lost
//                        the library ends the process with status 1.
using System;
using System.Threading;
using Metaparticle.Sync;
// System.Threading.Lock (.NET 9+) has the same simple name.
using Lock = Metaparticle.Sync.Lock;

internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: Metaparticle.Sync.TestHelper hold|try|hold-until-lost NAME");
            return 2;
        }
        string mode = args[0], name = args[1];
        switch (mode)
        {
            case "hold":
                using (var l = new Lock(name))
                {
                    l.WaitOne();
                    Console.WriteLine($"acquired {l.Token}");
                    Console.In.ReadLine();
                    l.Release();
                    Console.WriteLine("released");
                }
                return 0;
            case "try":
                using (var l = new Lock(name))
                {
                    if (!l.TryWait())
                    {
                        Console.WriteLine("busy");
                        return 0;
                    }
                    Console.WriteLine($"acquired {l.Token}");
                    l.Release();
                }
                return 0;
            case "hold-until-lost":
                var held = new Lock(name, new LockOptions { Ttl = TimeSpan.FromSeconds(3) });
                held.WaitOne();
                Console.WriteLine($"acquired {held.Token}");
                Thread.Sleep(TimeSpan.FromMinutes(2));
                Console.WriteLine("still running: the loss did not end the process");
                return 3;
            default:
                Console.Error.WriteLine($"unknown mode '{mode}'");
                return 2;
        }
    }
}
