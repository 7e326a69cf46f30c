using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using Metaparticle.Package.Interop;
using Xunit;

namespace Metaparticle.Package.Tests
{
    /// <summary>Options → the core's JSON, and the core's validation of it.</summary>
    public class OptionsTests
    {
        private static JsonElement Serialize(Options o, AppLayout? layout = null) =>
            JsonDocument.Parse(OptionsJson.Serialize(o, layout)).RootElement.Clone();

        private static string[] Keys(JsonElement e) => e.EnumerateObject().Select(p => p.Name).ToArray();

        [Fact]
        public void DefaultOptionsWriteOnlyTheFlags()
        {
            JsonElement j = Serialize(new Options());
            Assert.Equal(new[] { "publish", "public", "dryRun", "keepRunning", "quiet" }, Keys(j));
            Assert.All(j.EnumerateObject(), p => Assert.Equal(JsonValueKind.False, p.Value.ValueKind));
        }

        [Fact]
        public void EverySeedOptionUsesItsSeedName()
        {
            var o = new Options
            {
                Name = "web",
                Repository = "127.0.0.1:5000/team",
                Tag = "v1",
                Ports = { 8080, 9090 },
                Replicas = 3,
                Runner = Runners.Metaparticle,
                Publish = true,
                Public = true,
                ShardSpec = new ShardSpec { Shards = 4, UrlPattern = "/users/(.*)" },
                Namespace = "prod",
                ImagePullSecrets = { "regcred" },
                Env = { ["LOG_LEVEL"] = "debug" },
                Files = { new FileCopy("/etc/hostname", "/config/hostname") },
                BaseImage = "debian:12",
                DryRun = true,
                KeepRunning = true,
                Quiet = true,
                WorkingDir = "/srv",
                Include = { "/usr/share/zoneinfo" },
                Command = new[] { "/usr/bin/env", "true" },
            };
            JsonElement j = Serialize(o);
            Assert.Equal("web", j.GetProperty("name").GetString());
            Assert.Equal("127.0.0.1:5000/team", j.GetProperty("repository").GetString());
            Assert.Equal("v1", j.GetProperty("tag").GetString());
            Assert.Equal(new[] { 8080, 9090 }, j.GetProperty("ports").EnumerateArray().Select(p => p.GetInt32()));
            Assert.Equal(3, j.GetProperty("replicas").GetInt32());
            Assert.Equal("metaparticle", j.GetProperty("runner").GetString());
            Assert.True(j.GetProperty("publish").GetBoolean());
            Assert.True(j.GetProperty("public").GetBoolean());
            Assert.Equal(4, j.GetProperty("shardSpec").GetProperty("shards").GetInt32());
            Assert.Equal("/users/(.*)", j.GetProperty("shardSpec").GetProperty("urlPattern").GetString());
            Assert.False(j.TryGetProperty("jobSpec", out _));
            Assert.Equal("prod", j.GetProperty("namespace").GetString());
            Assert.Equal(new[] { "regcred" }, j.GetProperty("imagePullSecrets").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal("debug", j.GetProperty("env").GetProperty("LOG_LEVEL").GetString());
            JsonElement file = j.GetProperty("files")[0];
            Assert.Equal("/etc/hostname", file.GetProperty("src").GetString());
            Assert.Equal("/config/hostname", file.GetProperty("dest").GetString());
            Assert.Equal("debian:12", j.GetProperty("baseImage").GetString());
            Assert.True(j.GetProperty("dryRun").GetBoolean());
            Assert.True(j.GetProperty("keepRunning").GetBoolean());
            Assert.True(j.GetProperty("quiet").GetBoolean());
            Assert.Equal("/srv", j.GetProperty("workingDir").GetString());
            Assert.Equal(new[] { "/usr/share/zoneinfo" }, j.GetProperty("include").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal(new[] { "/usr/bin/env", "true" }, j.GetProperty("command").EnumerateArray().Select(e => e.GetString()));
        }

        [Fact]
        public void JobSpecIsWritten()
        {
            JsonElement j = Serialize(new Options { JobSpec = new JobSpec { Count = 5 } });
            Assert.Equal(5, j.GetProperty("jobSpec").GetProperty("count").GetInt32());
        }

        [Fact]
        public void OutsideTheLayoutSuppliesCommandIncludeNameAndEnvironmentDefaults()
        {
            AppLayout layout = AppLayout.Discover();
            JsonElement j = Serialize(new Options(), layout);
            Assert.Equal(layout.Command, j.GetProperty("command").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal(layout.Include, j.GetProperty("include").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal(layout.DefaultName, j.GetProperty("name").GetString());
            Assert.Equal(layout.WorkingDir, j.GetProperty("workingDir").GetString());
            Assert.Equal("true", j.GetProperty("env").GetProperty("DOTNET_RUNNING_IN_CONTAINER").GetString());
        }

        [Fact]
        public void UserSettingsOverrideTheLayoutDefaults()
        {
            AppLayout layout = AppLayout.Discover();
            var o = new Options
            {
                Name = "mine",
                WorkingDir = "/work",
                Env = { ["DOTNET_RUNNING_IN_CONTAINER"] = "false", ["EXTRA"] = "1" },
                Include = { "/etc/hostname" },
                Command = new List<string> { "/bin/true", "x" },
            };
            JsonElement j = Serialize(o, layout);
            Assert.Equal("mine", j.GetProperty("name").GetString());
            Assert.Equal("/work", j.GetProperty("workingDir").GetString());
            Assert.Equal("false", j.GetProperty("env").GetProperty("DOTNET_RUNNING_IN_CONTAINER").GetString());
            Assert.Equal("1", j.GetProperty("env").GetProperty("EXTRA").GetString());
            Assert.Equal(new[] { "/bin/true", "x" }, j.GetProperty("command").EnumerateArray().Select(e => e.GetString()));
            // The runtime and app still come along, followed by the user's paths.
            string?[] include = j.GetProperty("include").EnumerateArray().Select(e => e.GetString()).ToArray();
            Assert.Equal(layout.Include.Concat(new[] { "/etc/hostname" }), include);
        }

        [Fact]
        public void AdditionalOptionsArePassedThroughButCannotShadowProperties()
        {
            var o = new Options { AdditionalOptions = { ["futureOption"] = new JsonObject { ["x"] = 1 } } };
            Assert.Equal(1, Serialize(o).GetProperty("futureOption").GetProperty("x").GetInt32());

            var shadow = new Options { AdditionalOptions = { ["ports"] = new JsonArray(1, 2) } };
            ArgumentException e = Assert.Throws<ArgumentException>(() => OptionsJson.Serialize(shadow, null));
            Assert.Contains("\"ports\"", e.Message);
        }

        [Theory]
        [InlineData("ContainerizeExample", "containerizeexample")]
        [InlineData("Metaparticle.Package.TestHelper", "metaparticle-package-testhelper")]
        [InlineData("My__App--", "my-app")]
        [InlineData("123abc", "app-123abc")]
        [InlineData("..", "app")]
        public void DefaultNamesAreDnsLabels(string raw, string expected)
        {
            Assert.Equal(expected, AppLayout.SanitizeName(raw));
        }

        [Fact]
        public void LongNamesAreCutTo63Characters()
        {
            Assert.Equal(new string('a', 63), AppLayout.SanitizeName(new string('a', 70)));
            // cut after the '-' that stood for '.': the trailing '-' goes too
            Assert.Equal(new string('a', 62), AppLayout.SanitizeName(new string('a', 62) + ".bc"));
        }

        // ---- validation by the native core (Render parses the options before reading any file)

        private static MetaparticleException Rejected(Options o)
        {
            return Assert.ThrowsAny<MetaparticleException>(() => Containerizer.Render(o));
        }

        [Fact]
        public void UnknownOptionIsRejectedByName()
        {
            MetaparticleException e = Rejected(new Options { AdditionalOptions = { ["replica"] = 2 } });
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.Contains("unknown option \"replica\"", e.Message);
            Assert.Contains("replicas", e.Message); // the known names are listed
        }

        [Theory]
        [InlineData("replicas")]
        [InlineData("tag")]
        [InlineData("name")]
        [InlineData("ports")]
        [InlineData("runner")]
        [InlineData("repository")]
        public void InvalidValuesNameTheOption(string which)
        {
            var o = new Options();
            switch (which)
            {
                case "replicas": o.Replicas = 0; break;
                case "tag": o.Tag = "not a tag"; break;
                case "name": o.Name = "Upper_Case"; break;
                case "ports": o.Ports = new[] { 70000 }; break;
                case "runner": o.Runner = "swarm"; break;
                case "repository": o.Repository = "Docker.IO//x"; break;
            }
            MetaparticleException e = Rejected(o);
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.Contains($"\"{which}", e.Message);
        }

        [Fact]
        public void PublishNeedsARepository()
        {
            MetaparticleException e = Rejected(new Options { Publish = true });
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.Contains("\"repository\"", e.Message);
        }

        [Fact]
        public void NullEnvironmentValueIsRejected()
        {
            MetaparticleException e = Rejected(new Options { Env = { ["EMPTY"] = null! } });
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.Contains("env.EMPTY", e.Message);
        }

        [Fact]
        public void ContainerizeRejectsInvalidOptionsWithoutRunningMain()
        {
            bool ran = false;
            MetaparticleException e = Assert.ThrowsAny<MetaparticleException>(
                () => Containerizer.Containerize(new Options { Replicas = -1 }, () => { ran = true; }));
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.Contains("\"replicas\"", e.Message);
            Assert.False(ran);
        }

        [Fact]
        public void NullArgumentsThrow()
        {
            Assert.Throws<ArgumentNullException>(() => Containerizer.Render(null!));
            Assert.Throws<ArgumentNullException>(() => Containerizer.Containerize(new Options(), (Action)null!));
            Assert.Throws<ArgumentNullException>(() => Containerizer.Containerize(null!, () => 0));
        }
    }
}
