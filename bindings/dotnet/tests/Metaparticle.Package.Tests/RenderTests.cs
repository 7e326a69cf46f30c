using System;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.Json;
using Xunit;

namespace Metaparticle.Package.Tests
{
    /// <summary>One Render of this test process, shared by the tests below (it reads and compresses ~130 MB).</summary>
    public sealed class RenderedTestProcess
    {
        internal static readonly Options Options = new Options
        {
            Name = "render-test",
            Repository = "127.0.0.1:5000/team",
            Tag = "t1",
            Ports = { 8080, 9090 },
            Replicas = 2,
            Env = { ["GREETING"] = "hello world" },
        };

        public RenderedTestProcess() => Result = Containerizer.Render(Options);

        internal RenderResult Result { get; }
    }

    [Collection("heavy")]
    public class RenderTests : IClassFixture<RenderedTestProcess>
    {
        private readonly RenderResult _r;

        public RenderTests(RenderedTestProcess fixture) => _r = fixture.Result;

        [Fact]
        public void ImageReferenceAndDigest()
        {
            Assert.Equal("127.0.0.1:5000/team/render-test:t1", _r.ImageReference);
            Assert.Matches("^sha256:[0-9a-f]{64}$", _r.ImageDigest);
            Assert.Equal(2, _r.ImageManifest.GetProperty("schemaVersion").GetInt32());
            // Libraries; the .NET host and framework when installed under /usr
            // (they change with upgrades, not with the app); then the app.
            int layers = _r.Entrypoint[0].StartsWith("/usr/", StringComparison.Ordinal) ? 3 : 2;
            Assert.Equal(layers, _r.ImageManifest.GetProperty("layers").GetArrayLength());
        }

        [Fact]
        public void EntrypointRunsTheDotnetHostWithTheEntryAssemblyAndArguments()
        {
            string host = _r.Entrypoint[0];
            Assert.Equal("dotnet", Path.GetFileName(host));
            Assert.True(File.Exists(host), host);
            // the same install this process runs on: <root>/shared/Microsoft.NETCore.App/<version>
            string fx = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
            Assert.Equal(Path.GetFullPath(Path.Combine(fx, "..", "..", "..", "dotnet")), host);
            Assert.Equal(Assembly.GetEntryAssembly()!.Location, _r.Entrypoint[1]);
            Assert.Equal(Environment.GetCommandLineArgs().Skip(1), _r.Entrypoint.Skip(2));
        }

        [Fact]
        public void EnvironmentMarksTheContainerAndKeepsTheUsersVariables()
        {
            Assert.Equal("true", _r.Environment["METAPARTICLE_IN_CONTAINER"]);
            Assert.Equal("true", _r.Environment["DOTNET_RUNNING_IN_CONTAINER"]);
            Assert.Equal("hello world", _r.Environment["GREETING"]);
            Assert.Contains("/usr/bin", _r.Environment["PATH"]);
            // the runtime's install, for apphost commands; and no LTTng provider to look for
            Assert.Equal(Path.GetDirectoryName(_r.Entrypoint[0]), _r.Environment["DOTNET_ROOT"]);
            Assert.Equal("0", _r.Environment["DOTNET_LTTng"]);
        }

        [Fact]
        public void ExposedPortsAndWorkingDirectory()
        {
            Assert.Equal(new[] { "8080/tcp", "9090/tcp" }, _r.ExposedPorts.OrderBy(p => p, StringComparer.Ordinal));
            Assert.Equal(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory), _r.WorkingDir);
        }

        [Fact]
        public void OneDockerContainerPerReplicaOnConsecutiveLoopbackPorts()
        {
            Assert.Equal(new[] { "render-test-0", "render-test-1" }, _r.DockerContainers.Select(c => c.Name));
            for (int i = 0; i < 2; i++)
            {
                JsonElement body = _r.DockerContainers[i].Body;
                Assert.Equal(_r.ImageReference, body.GetProperty("Image").GetString());
                Assert.Equal($"render-test-{i}", body.GetProperty("Hostname").GetString());
                JsonElement binding = body.GetProperty("HostConfig").GetProperty("PortBindings").GetProperty("8080/tcp")[0];
                Assert.Equal("127.0.0.1", binding.GetProperty("HostIp").GetString());
                Assert.Equal((8080 + i).ToString(), binding.GetProperty("HostPort").GetString());
            }
        }

        [Fact]
        public void NoWarnings()
        {
            // e.g. the LTTng tracepoint provider (left out) would warn about liblttng-ust
            Assert.Empty(_r.Warnings);
        }

        [Fact]
        public void ToStringIsTheWholeDocument()
        {
            using JsonDocument again = JsonDocument.Parse(_r.ToString());
            Assert.Equal(_r.ImageDigest, again.RootElement.GetProperty("image").GetProperty("digest").GetString());
            Assert.Contains("application/vnd.oci.image.manifest.v1+json", _r.ToString()); // not \u002B-escaped
        }

        [Fact]
        public void RenderingAgainGivesTheSameDigest()
        {
            Assert.Equal(_r.ImageDigest, Containerizer.Render(RenderedTestProcess.Options).ImageDigest);
        }

        [Fact]
        public void ChangingAnOptionChangesTheImage()
        {
            var other = new Options { Name = "render-test", Repository = "127.0.0.1:5000/team", Tag = "t1", Ports = { 8080 } };
            RenderResult r = Containerizer.Render(other);
            Assert.NotEqual(_r.ImageDigest, r.ImageDigest);
            Assert.Equal(new[] { "8080/tcp" }, r.ExposedPorts);
            Assert.Single(r.DockerContainers);
        }
    }

    /// <summary>The outside path with dryRun, in a real app: the image of that app, and main does not run.</summary>
    [Collection("heavy")]
    public class DryRunTests
    {
        [Fact]
        public void DryRunOutsidePrintsTheImageOfThisAppWithoutRunningMain()
        {
            (int exit, Child p) = HelperProcessTests.Run("false", "dry-run");
            using (p)
            {
                Assert.True(exit == 0, p.Describe());
                Assert.DoesNotContain("main ran", p.Stdout);
                string stdout = p.Stdout;
                int end = stdout.LastIndexOf("returned 0", StringComparison.Ordinal);
                Assert.True(end > 0, p.Describe());
                // YAML for `kubectl apply -f -`: the image config and the Docker
                // containers are in the leading comment block (Render() gives
                // them as data; RenderTests checks those in detail).
                string[] comments = stdout.Substring(0, end).Split('\n')
                    .TakeWhile(l => l.StartsWith("#", StringComparison.Ordinal)).ToArray();
                Assert.True(comments.Length > 2, p.Describe());
                Assert.StartsWith("# containerize dry run", comments[0]);
                string head = string.Join("\n", comments);
                Assert.Matches(@"reference: ['""]?metaparticle-package-testhelper:latest", head);
                Assert.Contains("METAPARTICLE_IN_CONTAINER=true", head);
                Assert.Contains("8080/tcp", head);
                Assert.Contains(HelperProcessTests.HelperDll, head);
                Assert.Contains(comments, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"- ['""]?dry-run['""]?\s*$"));
                // One Docker container per replica.
                Assert.Equal(2, comments.Count(l => System.Text.RegularExpressions.Regex.IsMatch(
                    l, @"^#\s*-\s+name: ['""]?metaparticle-package-testhelper-[01]['""]?\s*$")));
            }
        }
    }
}
