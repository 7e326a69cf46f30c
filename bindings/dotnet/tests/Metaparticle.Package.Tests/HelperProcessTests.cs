using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Xunit;

namespace Metaparticle.Package.Tests
{
    /// <summary>
    /// containerize() called from a real app's Main (the TestHelper), inside a
    /// "container" (METAPARTICLE_IN_CONTAINER set for the process, read by the
    /// native core) and outside with dryRun.
    /// </summary>
    public class HelperProcessTests
    {
        private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

        internal static string HelperDll
        {
            get
            {
                string dll = Path.Combine(AppContext.BaseDirectory, "Metaparticle.Package.TestHelper.dll");
                Assert.True(File.Exists(dll), $"test helper not found at {dll}");
                return dll;
            }
        }

        internal static (int Exit, Child Process) Run(string? inContainer, params string[] args)
        {
            var env = new Dictionary<string, string?> { ["METAPARTICLE_IN_CONTAINER"] = inContainer };
            var child = Child.Dotnet(HelperDll, args, env);
            int? exit = child.WaitForExit(Timeout);
            Assert.True(exit.HasValue, $"helper {string.Join(' ', args)} did not exit within {Timeout}\n{child.Describe()}");
            return (exit!.Value, child);
        }

        [Theory]
        [InlineData("true", true)]
        [InlineData("1", true)]
        [InlineData("TRUE", true)]
        [InlineData("false", false)]
        [InlineData("0", false)]
        [InlineData(null, false)]
        public void InContainerFollowsTheEnvironmentVariable(string? value, bool expected)
        {
            (int exit, Child p) = Run(value, "in-container");
            using (p)
            {
                Assert.Equal(0, exit);
                Assert.Contains($"in container: {expected}", p.Stdout);
            }
        }

        [Fact]
        public void InsideTheSyncFormRunsMainOnTheCallingThreadAndReturnsItsResult()
        {
            (int exit, Child p) = Run("true", "sync", "7");
            using (p)
            {
                Assert.True(exit == 7, p.Describe());
                // Main's thread (managed id 1): the core calls back on the thread that called it.
                Assert.Contains("main ran on thread 1\n", p.Stdout);
                Assert.Contains("returned 7", p.Stdout);
                Assert.Equal("", p.Stderr); // nothing built, nothing logged
            }
        }

        [Fact]
        public void InsideTheActionFormReturnsZero()
        {
            (int exit, Child p) = Run("true", "action");
            using (p)
            {
                Assert.True(exit == 0, p.Describe());
                Assert.Contains("main ran on thread", p.Stdout);
                Assert.Contains("returned 0", p.Stdout);
            }
        }

        [Fact]
        public void InsideTheAsyncFormAwaitsMainAndReturnsItsResult()
        {
            (int exit, Child p) = Run("true", "async", "5");
            using (p)
            {
                Assert.True(exit == 5, p.Describe());
                Assert.Contains("main ran on thread", p.Stdout);
                Assert.Contains("returned 5", p.Stdout);
            }
        }

        [Fact]
        public void AnExceptionFromMainPropagatesWithItsStackTrace()
        {
            (int exit, Child p) = Run("true", "throw");
            using (p)
            {
                Assert.NotEqual(0, exit);
                Assert.Contains("System.InvalidOperationException: boom from main", p.Stderr);
                Assert.Contains("ThrowFromMain", p.Stderr); // the original frames survive the native boundary
                Assert.DoesNotContain("returned", p.Stdout);
            }
        }

        [Theory]
        [InlineData("true")]
        [InlineData("false")]
        public void InvalidOptionsAreRejectedInsideAndOutside(string inContainer)
        {
            (int exit, Child p) = Run(inContainer, "invalid");
            using (p)
            {
                Assert.True(exit == 3, p.Describe());
                Assert.Contains("error MP_EINVAL: containerize options: \"replicas\"", p.Stdout);
                Assert.DoesNotContain("main ran", p.Stdout);
            }
        }
    }
}
