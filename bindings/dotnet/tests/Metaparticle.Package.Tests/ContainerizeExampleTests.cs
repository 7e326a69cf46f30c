using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Text.RegularExpressions;
using System.Threading;
using Xunit;
using Xunit.Abstractions;

namespace Metaparticle.Package.Tests
{
    /// <summary>
    /// The C# containerize example, end to end: it builds an image of itself
    /// (the .NET runtime + the app), pushes it to a real registry, and runs 2
    /// replicas under Podman (pulled from that registry) whose output comes
    /// back prefixed per replica; SIGINT removes them.
    /// </summary>
    [Collection("heavy")]
    [Trait("Category", "Container")]
    public class ContainerizeExampleTests : IClassFixture<ContainerEngine>
    {
        /// <summary>The default name: the entry assembly's name made a DNS label.</summary>
        internal const string Name = "containerizeexample";

        private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(5);
        private readonly ExampleApp _app;
        private readonly ContainerEngine _engine;
        private readonly ITestOutputHelper _output;

        public ContainerizeExampleTests(ExampleApp app, ContainerEngine engine, ITestOutputHelper output)
        {
            _app = app;
            _engine = engine;
            _output = output;
        }

        private Child StartExample(int port, int replicas, string? repository, string? dockerHost = null)
        {
            var args = new List<string> { port.ToString(), replicas.ToString() };
            if (repository is not null)
            {
                args.Add(repository);
            }
            return Child.Dotnet(_app.Dll, args, new Dictionary<string, string?>
            {
                ["DOCKER_HOST"] = dockerHost ?? "unix://" + _engine.Socket,
                // a cold layer cache of its own: the figures are those of a first run
                ["METAPARTICLE_CACHE_DIR"] = System.IO.Path.Combine(_engine.Dir, "cache"),
                ["METAPARTICLE_IN_CONTAINER"] = null,
            });
        }

        internal static string Get(int port)
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            Exception? last = null;
            for (int i = 0; i < 50; i++)
            {
                try
                {
                    return http.GetStringAsync($"http://127.0.0.1:{port}/").GetAwaiter().GetResult();
                }
                catch (Exception e) when (e is HttpRequestException || e is System.Threading.Tasks.TaskCanceledException)
                {
                    last = e;
                    Thread.Sleep(200);
                }
            }
            throw new InvalidOperationException($"nothing answered on 127.0.0.1:{port}", last);
        }

        [Fact]
        public void TwoReplicasArePushedRunStreamedAndTornDownOnSigint()
        {
            int port = Env.FreePortRange(2);
            string repository = _engine.RegistryAddress + "/mptest";
            try
            {
                using Child ex = StartExample(port, 2, repository);

                // Each replica's greeting comes back through the streamed logs, prefixed with its name.
                for (int i = 0; i < 2; i++)
                {
                    string want = $"[{Name}-{i}] hello from {Name}-{i}, serving on port {port}";
                    Assert.True(ex.WaitForLine(l => l == want, StartTimeout), $"no '{want}' within {StartTimeout}\n{ex.Describe()}");
                }

                // Both really serve, from nothing but the image, each on its own host port.
                Assert.Equal($"hello from {Name}-0\n", Get(port));
                Assert.Equal($"hello from {Name}-1\n", Get(port + 1));
                Assert.Equal(new[] { $"{Name}-0", $"{Name}-1" }, _engine.Containers(Name).OrderBy(n => n, StringComparer.Ordinal));

                // The image was pushed, and what the registry holds is the image that was built.
                string image = $"{repository}/{Name}:latest";
                Match built = Regex.Match(ex.Stderr, "image " + Regex.Escape(image) + @": ([0-9.]+ [KM]iB), manifest (sha256:[0-9a-f]{64})");
                Assert.True(built.Success, ex.Describe());
                using (var http = new HttpClient())
                {
                    var head = new HttpRequestMessage(HttpMethod.Head, $"http://{_engine.RegistryAddress}/v2/mptest/{Name}/manifests/latest");
                    head.Headers.Accept.ParseAdd("application/vnd.oci.image.manifest.v1+json");
                    HttpResponseMessage r = http.Send(head);
                    Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                    Assert.Equal(built.Groups[2].Value, r.Headers.GetValues("Docker-Content-Digest").Single());
                }
                Assert.Contains($"pulling {image}", ex.Stderr);

                Report(ex, built.Groups[1].Value);

                ex.Signal(Child.SIGINT);
                int? exit = ex.WaitForExit(TimeSpan.FromMinutes(2));
                Assert.True(exit == 0, $"exit {exit?.ToString() ?? "timeout"}\n{ex.Describe()}");
                // the replicas' last words (they handle SIGTERM) came through before they were removed
                Assert.Contains($"[{Name}-0] {Name}-0 stopping", ex.Stdout);
                Assert.Contains($"[{Name}-1] {Name}-1 stopping", ex.Stdout);
                Assert.Contains("removed 2 container(s)", ex.Stderr);
                Assert.Empty(_engine.Containers(Name));
            }
            finally
            {
                _engine.RemoveContainers(Name);
            }
        }

        /// <summary>Figures for the record: build, push and start times, image size.</summary>
        private void Report(Child ex, string imageSize)
        {
            IReadOnlyList<(TimeSpan At, string Line)> lines = ex.StderrLines;
            TimeSpan? At(Func<string, bool> match) => lines.Where(l => match(l.Line)).Select(l => (TimeSpan?)l.At).FirstOrDefault();
            TimeSpan? built = At(l => l.StartsWith("containerize: image ", StringComparison.Ordinal));
            TimeSpan? pushed = At(l => l.StartsWith("containerize:   manifest ", StringComparison.Ordinal));
            TimeSpan? started = lines.Where(l => l.Line.StartsWith("containerize: started ", StringComparison.Ordinal))
                                     .Select(l => (TimeSpan?)l.At).LastOrDefault();
            _output.WriteLine($"C# example: dotnet build {_app.BuildTime.TotalSeconds:F1} s; image {imageSize} compressed; " +
                              $"built after {built?.TotalSeconds:F1} s, pushed after {pushed?.TotalSeconds:F1} s, " +
                              $"2 replicas started after {started?.TotalSeconds:F1} s (from process start, cold layer cache)");
            foreach ((TimeSpan at, string line) in lines.Where(l => l.Line.Contains(" layer ") || l.Line.Contains("uploaded")))
            {
                _output.WriteLine($"  {at.TotalSeconds,6:F1} s  {line}");
            }
        }
    }

    /// <summary>The C# example without a container engine: its inside path, and its error report.</summary>
    [Collection("heavy")]
    public class ContainerizeExampleLocalTests
    {
        private readonly ExampleApp _app;

        public ContainerizeExampleLocalTests(ExampleApp app) => _app = app;

        [Fact]
        public void InsideTheExampleJustServes()
        {
            int port = Env.FreePortRange(1);
            using Child ex = Child.Dotnet(_app.Dll, new[] { port.ToString(), "2" },
                new Dictionary<string, string?> { ["METAPARTICLE_IN_CONTAINER"] = "true" });
            string host = Dns.GetHostName();
            Assert.True(ex.WaitForLine(l => l == $"hello from {host}, serving on port {port}", TimeSpan.FromSeconds(60)), ex.Describe());
            Assert.Equal($"hello from {host}\n", ContainerizeExampleTests.Get(port));
            ex.Signal(Child.SIGTERM); // what `docker stop` sends
            Assert.Equal(0, ex.WaitForExit(TimeSpan.FromSeconds(30)));
            Assert.Contains($"{host} stopping", ex.Stdout);
            Assert.Equal("", ex.Stderr); // inside, nothing is built or logged
        }

        [Fact]
        public void AnUnreachableEngineIsReportedBeforeBuildingAnything()
        {
            string socket = $"/tmp/mp-no-such-engine-{Guid.NewGuid():N}.sock";
            using Child ex = Child.Dotnet(_app.Dll, new[] { Env.FreePortRange(1).ToString(), "1" }, new Dictionary<string, string?>
            {
                ["DOCKER_HOST"] = "unix://" + socket,
                ["METAPARTICLE_IN_CONTAINER"] = null,
            });
            Assert.Equal(1, ex.WaitForExit(TimeSpan.FromMinutes(2)));
            Assert.Contains("containerize failed (MP_EENGINE)", ex.Stderr);
            Assert.Contains("DOCKER_HOST", ex.Stderr);
            Assert.Contains(socket, ex.Stderr);
            Assert.DoesNotContain("layer runtime", ex.Stderr);
        }
    }
}
