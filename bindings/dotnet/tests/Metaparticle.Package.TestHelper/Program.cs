using System;
using System.Threading;
using System.Threading.Tasks;
using Metaparticle;
using Metaparticle.Package;

namespace Metaparticle.Package.TestHelper
{
    /// <summary>
    /// Modes (the first argument):
    ///   in-container         print Containerizer.InContainer
    ///   sync CODE            Containerize(options, Func&lt;int&gt;) whose main returns CODE
    ///   action               Containerize(options, Action)
    ///   async CODE           ContainerizeAsync(options, Func&lt;Task&lt;int&gt;&gt;)
    ///   throw                main throws InvalidOperationException("boom from main")
    ///   invalid              Replicas = 0: the core rejects it (inside and outside)
    ///   dry-run              DryRun = true: the core prints the render JSON
    /// Each prints "main ran on thread N" when main runs, and "returned CODE"
    /// when Containerize returned. MetaparticleExceptions are printed as
    /// "error NAME: message" with exit code 3.
    /// </summary>
    public static class Program
    {
        private static readonly Options s_options = new Options { Ports = { 8080 }, Replicas = 2, Quiet = true };

        public static async Task<int> Main(string[] args)
        {
            try
            {
                int result;
                switch (args.Length > 0 ? args[0] : "")
                {
                    case "in-container":
                        Console.WriteLine($"in container: {Containerizer.InContainer}");
                        return 0;
                    case "sync":
                        int code = int.Parse(args[1]);
                        result = Containerizer.Containerize(s_options, () =>
                        {
                            Console.WriteLine($"main ran on thread {Environment.CurrentManagedThreadId}");
                            return code;
                        });
                        break;
                    case "action":
                        result = Containerizer.Containerize(s_options, () =>
                        {
                            Console.WriteLine($"main ran on thread {Environment.CurrentManagedThreadId}");
                        });
                        break;
                    case "async":
                        int asyncCode = int.Parse(args[1]);
                        result = await Containerizer.ContainerizeAsync(s_options, async () =>
                        {
                            await Task.Delay(10);
                            Console.WriteLine($"main ran on thread {Environment.CurrentManagedThreadId}");
                            return asyncCode;
                        });
                        break;
                    case "throw":
                        result = Containerizer.Containerize(s_options, () => ThrowFromMain());
                        break;
                    case "invalid":
                        result = Containerizer.Containerize(new Options { Replicas = 0 }, () =>
                        {
                            Console.WriteLine("main ran");
                        });
                        break;
                    case "dry-run":
                        result = Containerizer.Containerize(
                            new Options { Ports = { 8080 }, Replicas = 2, DryRun = true, Quiet = true },
                            () => Console.WriteLine("main ran"));
                        break;
                    default:
                        Console.Error.WriteLine("usage: Metaparticle.Package.TestHelper in-container|sync CODE|action|async CODE|throw|invalid|dry-run");
                        return 2;
                }
                Console.WriteLine($"returned {result}");
                return result;
            }
            catch (MetaparticleException e)
            {
                Console.WriteLine($"error {MetaparticleLibrary.ErrorName(e.Code)}: {e.Message}");
                return 3;
            }
        }

        private static int ThrowFromMain() => throw new InvalidOperationException("boom from main");
    }
}
