using System;
using System.Threading;
using Xunit;

namespace Metaparticle.Sync.Tests
{
    /// <summary>Losing a lock when its sidecar dies. Each test kills a sidecar of its own.</summary>
    public sealed class LossTests
    {
        private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(3); // the shortest allowed: loss is reported within 2 s

        [Fact]
        public void OnLostIsCalledWhenTheSidecarDies()
        {
            using Sidecar sidecar = Sidecar.Start();
            using var lost = new ManualResetEventSlim();
            int lostThreadId = -1;
            using var l = new Lock(TestUtil.UniqueName("lost"), new LockOptions
            {
                SidecarUrl = sidecar.Url,
                Ttl = Ttl,
                OnLost = () =>
                {
                    lostThreadId = Environment.CurrentManagedThreadId;
                    lost.Set();
                },
            });
            l.WaitOne();
            Assert.True(l.IsHeld);

            sidecar.Kill();
            Assert.True(lost.Wait(TestUtil.Patience), "OnLost was not called after the sidecar died");
            Assert.False(l.IsHeld);
            Assert.NotEqual(Environment.CurrentManagedThreadId, lostThreadId); // a library thread
            var e = Assert.Throws<MetaparticleException>(() => l.Release());
            Assert.Equal(ErrorCode.NotHeld, e.Code);
        }

        [Fact]
        public void ExceptionInOnLostIsReportedAndTheLockStaysUsable()
        {
            using Sidecar sidecar = Sidecar.Start();
            string name = TestUtil.UniqueName("throwing");
            using var reported = new ManualResetEventSlim();
            CallbackExceptionEventArgs? report = null;
            EventHandler<CallbackExceptionEventArgs> handler = (_, args) =>
            {
                if (args.Source.Contains(name))
                {
                    report = args;
                    reported.Set();
                }
            };
            MetaparticleCallbacks.UnhandledException += handler;
            try
            {
                using var l = new Lock(name, new LockOptions
                {
                    SidecarUrl = sidecar.Url,
                    Ttl = Ttl,
                    OnLost = () => throw new InvalidOperationException("boom from OnLost"),
                });
                l.WaitOne();
                sidecar.Kill();
                Assert.True(reported.Wait(TestUtil.Patience), "the OnLost exception was not reported");
                Assert.IsType<InvalidOperationException>(report!.Exception);
                Assert.Contains("OnLost", report.Source);

                // The process and the handle survived: acquire again from a new sidecar.
                using Sidecar again = sidecar.StartAgainOnSameAddress();
                Assert.True(l.WaitOne(TestUtil.Patience));
                Assert.True(l.IsHeld);
            }
            finally
            {
                MetaparticleCallbacks.UnhandledException -= handler;
            }
        }

        [Fact]
        public void DisposeFromOnLostDoesNotDeadlock()
        {
            using Sidecar sidecar = Sidecar.Start();
            using var disposed = new ManualResetEventSlim();
            Lock? l = null;
            l = new Lock(TestUtil.UniqueName("dispose-in-onlost"), new LockOptions
            {
                SidecarUrl = sidecar.Url,
                Ttl = Ttl,
                OnLost = () =>
                {
                    l!.Dispose();
                    disposed.Set();
                },
            });
            l.WaitOne();
            sidecar.Kill();
            Assert.True(disposed.Wait(TestUtil.Patience), "Dispose inside OnLost did not return");
            Assert.Throws<ObjectDisposedException>(() => l.IsHeld);
        }
    }
}
