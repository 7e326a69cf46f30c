// The seed containerize example, in C#.
//
//   dotnet run -- [port [replicas [repository]]]     (defaults: 8080, 2, none)
//
// Outside a container, Containerize builds an image of this very program (the
// .NET runtime it runs on + this app, no Dockerfile, no daemon), pushes it when
// a repository is given, and runs the replicas with Docker or Podman
// (DOCKER_HOST), streaming their output with a "[name-i] " prefix per replica
// until Ctrl-C, which removes them. Inside, each replica serves
// "hello from <hostname>" over HTTP; replica i is on host port port + i.
#nullable enable
using System;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Metaparticle;
using Metaparticle.Package;
using static Metaparticle.Package.Containerizer;

namespace ContainerizeExample
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            int port = args.Length > 0 ? int.Parse(args[0]) : 8080;
            int replicas = args.Length > 1 ? int.Parse(args[1]) : 2;
            string? repository = args.Length > 2 ? args[2] : null;

            try
            {
                return Containerize(
                    new Options
                    {
                        Ports = { port },
                        Replicas = replicas,
                        Repository = repository,
                        Publish = repository != null,
                    },
                    () => Serve(port));
            }
            catch (MetaparticleException e)
            {
                // e.g. MP_EENGINE: no Docker or Podman at DOCKER_HOST; the
                // message says how to start one.
                Console.Error.WriteLine($"containerize failed ({MetaparticleLibrary.ErrorName(e.Code)}): {e.Message}");
                return 1;
            }
        }

        // Runs inside the container.
        private static int Serve(int port)
        {
            string host = Dns.GetHostName();
            using var stop = new CancellationTokenSource();
            // `docker stop` sends SIGTERM: finish the current request and say goodbye.
            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.Cancel();
            }
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);

            using var listener = new HttpListener();
            listener.Prefixes.Add($"http://*:{port}/");
            listener.Start();
            Console.WriteLine($"hello from {host}, serving on port {port}");

            while (true)
            {
                Task<HttpListenerContext> next = listener.GetContextAsync();
                try
                {
                    next.Wait(stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                HttpListenerContext context = next.Result;
                byte[] body = Encoding.UTF8.GetBytes($"hello from {host}\n");
                context.Response.ContentType = "text/plain";
                context.Response.ContentLength64 = body.Length;
                context.Response.OutputStream.Write(body);
                context.Response.Close();
                Console.WriteLine($"{host} answered a request for {context.Request.Url?.AbsolutePath}");
            }
            Console.WriteLine($"{host} stopping");
            return 0;
        }
    }
}
