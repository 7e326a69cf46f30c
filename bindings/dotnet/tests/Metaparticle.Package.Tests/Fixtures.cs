using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Http;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace Metaparticle.Package.Tests
{
    /// <summary>
    /// Tests that read or compress the .NET runtime (~130 MB) or run
    /// containers: one at a time, so they do not compete for the CPU, and
    /// sharing one build of the C# example.
    /// </summary>
    [CollectionDefinition("heavy")]
    public sealed class HeavyCollection : ICollectionFixture<ExampleApp>
    {
    }

    /// <summary>
    /// examples/csharp/ContainerizeExample, built as a user builds it
    /// (<c>dotnet build</c> of its project) into a temporary artifacts folder,
    /// with this test run's native library.
    /// </summary>
    public sealed class ExampleApp : IDisposable
    {
        private readonly string _dir;

        public ExampleApp()
        {
            _dir = Env.MakeTempDir("mp-dnex-");
            string project = Path.Combine(Env.RepoRoot, "examples", "csharp", "ContainerizeExample", "ContainerizeExample.csproj");
            // The outer `dotnet test` exports MSBuild settings meant for its own
            // build; the example's build must find the SDK by itself.
            var env = new Dictionary<string, string?>
            {
                ["MSBuildExtensionsPath"] = null,
                ["MSBUILD_EXE_PATH"] = null,
                ["MSBuildSDKsPath"] = null,
                ["MSBuildLoadMicrosoftTargetsReadOnly"] = null,
                ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
                ["DOTNET_NOLOGO"] = "1",
            };
            var clock = Stopwatch.StartNew();
            using var build = new Child(Env.DotnetHost, new[]
            {
                "build", project, "--artifacts-path", _dir, "-p:MetaparticleNativeLib=" + Env.NativeLibrary,
                // no build servers left running after the tests
                "-nodeReuse:false", "-p:UseSharedCompilation=false",
            }, env);
            int? exit = build.WaitForExit(TimeSpan.FromMinutes(10));
            if (exit != 0)
            {
                throw new InvalidOperationException($"building {project} failed (exit {exit?.ToString() ?? "timeout"}):\n{build.Describe()}");
            }
            BuildTime = clock.Elapsed;
            Dll = Path.Combine(_dir, "bin", "ContainerizeExample", "debug", "ContainerizeExample.dll");
            if (!File.Exists(Dll))
            {
                throw new InvalidOperationException($"the example built, but {Dll} is not there:\n{build.Describe()}");
            }
        }

        /// <summary>The example's entry assembly.</summary>
        public string Dll { get; }

        /// <summary>How long `dotnet build` took.</summary>
        public TimeSpan BuildTime { get; }

        public void Dispose() => Env.RemoveTree(_dir);
    }

    /// <summary>
    /// A docker-registry on 127.0.0.1 (port chosen by the registry) and Podman's
    /// Docker-compatible service on a private unix socket, with its own
    /// configuration and storage under a temporary folder, so nothing depends
    /// on (or changes) the machine's Podman state. The settings are those of
    /// tests/package/test_package_podman.cpp (the test environment of the project specification: runtime runc,
    /// cgroupfs, explicit ulimits, events to a file, vfs storage), plus the
    /// registry marked insecure (plain HTTP) so Podman can pull what was pushed.
    /// </summary>
    public sealed class ContainerEngine : IDisposable
    {
        private static readonly string[] s_programs = { "podman", "runc", "docker-registry" };
        private readonly Child? _registry;
        private readonly Child? _podman;
        private readonly HttpClient? _engine;

        public ContainerEngine()
        {
            foreach (string program in s_programs)
            {
                if (Env.FindProgram(program) is null)
                {
                    throw new InvalidOperationException(
                        $"the end-to-end tests need {string.Join(", ", s_programs)}; {program} is not on PATH. Install them " +
                        "(apt-get install podman runc docker-registry) or leave these tests out with --filter Category!=Container.");
                }
            }
            Dir = Env.MakeTempDir("mp-dnpod-");
            try
            {
                string reg = Path.Combine(Dir, "registry");
                Directory.CreateDirectory(reg);
                File.WriteAllText(Path.Combine(reg, "config.yml"),
                    "version: 0.1\n" +
                    "log:\n  level: info\n" +
                    $"storage:\n  filesystem:\n    rootdirectory: {reg}/data\n  delete:\n    enabled: true\n" +
                    "http:\n  addr: 127.0.0.1:0\n");
                _registry = new Child("docker-registry", new[] { "serve", Path.Combine(reg, "config.yml") });
                var listening = new Regex(@"listening on 127\.0\.0\.1:(\d+)");
                if (!_registry.WaitForLine(l => listening.IsMatch(l), TimeSpan.FromSeconds(30), stderr: true))
                {
                    throw new InvalidOperationException($"docker-registry did not start:\n{_registry.Describe()}");
                }
                RegistryAddress = "127.0.0.1:" + listening.Match(_registry.Stderr).Groups[1].Value;

                File.WriteAllText(Path.Combine(Dir, "containers.conf"),
                    "[containers]\n" +
                    "default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n" +
                    "[engine]\n" +
                    "runtime = \"runc\"\n" +
                    "cgroup_manager = \"cgroupfs\"\n" +
                    "events_logger = \"file\"\n" +
                    $"events_logfile_path = \"{Dir}/events.log\"\n" +
                    $"tmp_dir = \"{Dir}/tmp\"\n" +
                    "[network]\n" +
                    $"network_config_dir = \"{Dir}/networks\"\n");
                File.WriteAllText(Path.Combine(Dir, "storage.conf"),
                    "[storage]\n" +
                    "driver = \"vfs\"\n" +
                    $"graphroot = \"{Dir}/root\"\n" +
                    $"runroot = \"{Dir}/run\"\n");
                File.WriteAllText(Path.Combine(Dir, "registries.conf"),
                    $"[[registry]]\nlocation = \"{RegistryAddress}\"\ninsecure = true\n");
                Socket = Path.Combine(Dir, "podman.sock");
                _podman = new Child("podman", new[] { "system", "service", "--time=0", "unix://" + Socket },
                    new Dictionary<string, string?>
                    {
                        ["CONTAINERS_CONF"] = Path.Combine(Dir, "containers.conf"),
                        ["CONTAINERS_STORAGE_CONF"] = Path.Combine(Dir, "storage.conf"),
                        ["CONTAINERS_REGISTRIES_CONF"] = Path.Combine(Dir, "registries.conf"),
                    });
                _engine = new HttpClient(new SocketsHttpHandler
                {
                    ConnectCallback = async (context, ct) =>
                    {
                        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                        try
                        {
                            await s.ConnectAsync(new UnixDomainSocketEndPoint(Socket), ct).ConfigureAwait(false);
                            return new NetworkStream(s, ownsSocket: true);
                        }
                        catch
                        {
                            s.Dispose();
                            throw;
                        }
                    },
                })
                {
                    BaseAddress = new Uri("http://localhost/v1.41/"),
                    Timeout = TimeSpan.FromSeconds(60),
                };
                DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
                while (true)
                {
                    try
                    {
                        if (_engine.GetAsync("_ping").GetAwaiter().GetResult().IsSuccessStatusCode)
                        {
                            break;
                        }
                    }
                    catch (HttpRequestException)
                    {
                        // not listening yet
                    }
                    if (DateTime.UtcNow > deadline)
                    {
                        throw new InvalidOperationException($"podman system service did not come up:\n{_podman.Describe()}");
                    }
                    Thread.Sleep(200);
                }
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        /// <summary>The temporary folder holding the engine's and registry's state.</summary>
        public string Dir { get; }

        /// <summary>The engine's unix socket; DOCKER_HOST=unix://Socket.</summary>
        public string Socket { get; } = "";

        /// <summary>host:port of the registry.</summary>
        public string RegistryAddress { get; } = "";

        /// <summary>Names of the containers labelled io.metaparticle.name=<paramref name="name"/>, running or not.</summary>
        public List<string> Containers(string name)
        {
            string filters = Uri.EscapeDataString($"{{\"label\":[\"io.metaparticle.name={name}\"]}}");
            string body = _engine!.GetStringAsync($"containers/json?all=1&filters={filters}").GetAwaiter().GetResult();
            var names = new List<string>();
            using JsonDocument doc = JsonDocument.Parse(body);
            foreach (JsonElement c in doc.RootElement.EnumerateArray())
            {
                names.Add(c.GetProperty("Names")[0].GetString()!.TrimStart('/'));
            }
            return names;
        }

        /// <summary>Force-removes the containers labelled with <paramref name="name"/> (cleanup after a failed test).</summary>
        public void RemoveContainers(string name)
        {
            foreach (string c in Containers(name))
            {
                _engine!.DeleteAsync($"containers/{c}?force=1").GetAwaiter().GetResult();
            }
        }

        public void Dispose()
        {
            if (_podman is not null)
            {
                try
                {
                    RemoveContainers(ContainerizeExampleTests.Name);
                }
                catch (Exception e) when (e is HttpRequestException || e is TaskCanceledException || e is JsonException)
                {
                    Console.Error.WriteLine($"warning: cleaning up containers failed: {e.Message}");
                }
                Stop(_podman);
            }
            _engine?.Dispose();
            if (_registry is not null)
            {
                Stop(_registry);
            }
            Env.RemoveTree(Dir);
        }

        private static void Stop(Child child)
        {
            try
            {
                child.Signal(Child.SIGTERM);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
            if (child.WaitForExit(TimeSpan.FromSeconds(20)) is null)
            {
                Console.Error.WriteLine("warning: a test service ignored SIGTERM; killing it");
            }
            child.Dispose(); // kills it if still running
        }
    }
}
