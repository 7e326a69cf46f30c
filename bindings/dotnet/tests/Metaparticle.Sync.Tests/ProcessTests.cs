using System;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace Metaparticle.Sync.Tests
{
    /// <summary>Locks between two processes: this one and the test helper.</summary>
    public sealed class ProcessTests : IClassFixture<SidecarFixture>
    {
        private readonly Sidecar _sidecar;

        public ProcessTests(SidecarFixture fixture) => _sidecar = fixture.Sidecar;

        private static ulong ParseAcquired(string line)
        {
            Assert.StartsWith("acquired ", line);
            return ulong.Parse(line.Substring("acquired ".Length));
        }

        [Fact]
        public async Task AnotherProcessHoldsTheLockUntilItReleases()
        {
            string name = TestUtil.UniqueName("xproc");
            using var helper = new HelperProcess(_sidecar.Url, "hold", name);
            ulong helperToken = ParseAcquired(helper.ReadLine(TestUtil.Patience));

            using var l = new Lock(name, _sidecar.Url);
            Assert.False(l.TryWait());
            Task<bool> wait = l.WaitOneAsync();
            Thread.Sleep(200);
            Assert.False(wait.IsCompleted); // still held by the helper

            helper.WriteLine("release");
            Assert.Equal("released", helper.ReadLine(TestUtil.Patience));
            TestUtil.Finishes(wait, "the wait after the other process released");
            Assert.True(await wait);
            Assert.True(l.Token > helperToken);
            Assert.Equal(0, helper.WaitForExit(TestUtil.Patience));
        }

        [Fact]
        public void AnotherProcessCannotTakeALockHeldHere()
        {
            string name = TestUtil.UniqueName("xproc-held");
            using var l = new Lock(name, _sidecar.Url);
            l.WaitOne();
            using (var helper = new HelperProcess(_sidecar.Url, "try", name))
            {
                Assert.Equal("busy", helper.ReadLine(TestUtil.Patience));
                Assert.Equal(0, helper.WaitForExit(TestUtil.Patience));
            }
            l.Release();
            using (var helper = new HelperProcess(_sidecar.Url, "try", name))
            {
                Assert.StartsWith("acquired ", helper.ReadLine(TestUtil.Patience));
                Assert.Equal(0, helper.WaitForExit(TestUtil.Patience));
            }
        }

        [Fact]
        public void LossWithoutOnLostEndsTheProcessWithStatusOne()
        {
            using Sidecar own = Sidecar.Start(); // killed by this test
            string name = TestUtil.UniqueName("exit-on-loss");
            using var helper = new HelperProcess(own.Url, "hold-until-lost", name);
            ParseAcquired(helper.ReadLine(TestUtil.Patience));

            own.Kill();
            Assert.Equal(1, helper.WaitForExit(TestUtil.Patience));
            Assert.Contains("lost lock", helper.Stderr);
            Assert.Contains(name, helper.Stderr);
        }
    }
}
