using System;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace Metaparticle.Sync.Tests
{
    /// <summary>Lock semantics within one process, against one shared sidecar.</summary>
    public sealed class LockTests : IClassFixture<SidecarFixture>
    {
        private readonly Sidecar _sidecar;

        public LockTests(SidecarFixture fixture) => _sidecar = fixture.Sidecar;

        private Lock NewLock(string name, string? owner = null) =>
            new Lock(name, new LockOptions { SidecarUrl = _sidecar.Url, Owner = owner });

        [Fact]
        public void WaitOneAcquiresAndReleaseGivesUp()
        {
            string name = TestUtil.UniqueName("acquire");
            using Lock l = NewLock(name);
            Assert.Equal(name, l.Name);
            Assert.False(l.IsHeld);

            l.WaitOne();
            Assert.True(l.IsHeld);
            Assert.True(l.Token > 0);

            l.Release();
            Assert.False(l.IsHeld);
            var e = Assert.Throws<MetaparticleException>(() => l.Token);
            Assert.Equal(ErrorCode.NotHeld, e.Code);
        }

        [Fact]
        public void TryWaitFailsWhileHeldElsewhereAndSucceedsAfterRelease()
        {
            string name = TestUtil.UniqueName("trywait");
            using Lock a = NewLock(name, owner: "holder-a");
            using Lock b = NewLock(name, owner: "holder-b");

            Assert.True(a.TryWait());
            Assert.False(b.TryWait());
            Assert.False(b.IsHeld);
            Assert.False(b.WaitOne(TimeSpan.FromMilliseconds(300)));
            Assert.False(b.WaitOne(0));

            a.Release();
            Assert.True(b.TryWait());
            Assert.True(b.IsHeld);
            Assert.False(a.TryWait());
        }

        [Fact]
        public void LocksAreNotReentrant()
        {
            using Lock l = NewLock(TestUtil.UniqueName("reentrant"));
            l.WaitOne();
            var e = Assert.Throws<MetaparticleException>(() => l.WaitOne());
            Assert.Equal(ErrorCode.InvalidState, e.Code);
            Assert.True(l.IsHeld); // the failed second acquire did not disturb the hold
        }

        [Fact]
        public void TokenIncreasesWithEveryAcquisition()
        {
            string name = TestUtil.UniqueName("token");
            using Lock a = NewLock(name, owner: "a");
            using Lock b = NewLock(name, owner: "b");

            a.WaitOne();
            ulong first = a.Token;
            a.Release();

            b.WaitOne();
            ulong second = b.Token;
            b.Release();

            a.WaitOne();
            ulong third = a.Token;
            Assert.True(second > first, $"token {second} after {first}");
            Assert.True(third > second, $"token {third} after {second}");
        }

        [Fact]
        public void OwnerDefaultsToHostAndPidAndCanBeSet()
        {
            using Lock byDefault = NewLock(TestUtil.UniqueName("owner"));
            Assert.EndsWith("/" + Environment.ProcessId, byDefault.Owner);
            using Lock named = NewLock(TestUtil.UniqueName("owner"), owner: "worker-7");
            Assert.Equal("worker-7", named.Owner);
        }

        [Fact]
        public async Task WaitOneAsyncIsCanceledByItsToken()
        {
            string name = TestUtil.UniqueName("async-cancel");
            using Lock holder = NewLock(name, owner: "holder");
            using Lock waiter = NewLock(name, owner: "waiter");
            holder.WaitOne();

            using var cts = new CancellationTokenSource();
            Task<bool> wait = waiter.WaitOneAsync(null, cts.Token);
            await Task.Delay(200);
            Assert.False(wait.IsCompleted); // the lock is held elsewhere
            cts.Cancel();
            TestUtil.Finishes(wait, "the canceled wait");
            Assert.True(wait.IsCanceled, $"status {wait.Status}");
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
            Assert.False(waiter.IsHeld);

            // The handle is still usable: wait again, and get it when the holder lets go.
            Task<bool> second = waiter.WaitOneAsync();
            holder.Release();
            TestUtil.Finishes(second, "the second wait");
            Assert.True(await second);
            Assert.True(waiter.IsHeld);
        }

        [Fact]
        public async Task WaitOneAsyncWithAlreadyCanceledTokenDoesNotAcquire()
        {
            using Lock l = NewLock(TestUtil.UniqueName("async-precanceled"));
            Task<bool> wait = l.WaitOneAsync(null, new CancellationToken(canceled: true));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
            Assert.False(l.IsHeld);
        }

        [Fact]
        public async Task CancellingRightAwayNeverLeavesAWaitHanging()
        {
            // Cancels land at every point of the wait's start-up, including
            // before the native call begins waiting (the race the binding
            // closes by repeating the cancel).
            string name = TestUtil.UniqueName("async-race");
            using Lock holder = NewLock(name, owner: "holder");
            using Lock waiter = NewLock(name, owner: "waiter");
            holder.WaitOne();
            for (int i = 0; i < 60; i++)
            {
                using var cts = new CancellationTokenSource();
                Task<bool> wait = waiter.WaitOneAsync(null, cts.Token);
                // Spread the cancels over the first moments of the wait.
                Thread.SpinWait((i % 20) * 4000);
                cts.Cancel();
                TestUtil.Finishes(wait, $"wait #{i}");
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
            }
            Assert.False(waiter.IsHeld);
        }

        [Fact]
        public async Task WaitOneAsyncTimesOut()
        {
            string name = TestUtil.UniqueName("async-timeout");
            using Lock holder = NewLock(name, owner: "holder");
            using Lock waiter = NewLock(name, owner: "waiter");
            holder.WaitOne();
            Assert.False(await waiter.WaitOneAsync(TimeSpan.FromMilliseconds(300)));
            Assert.False(waiter.IsHeld);
        }

        [Fact]
        public void WaiterAcquiresWhenHolderReleases()
        {
            string name = TestUtil.UniqueName("handover");
            using Lock holder = NewLock(name, owner: "holder");
            using Lock waiter = NewLock(name, owner: "waiter");
            holder.WaitOne();
            Task blocked = Task.Factory.StartNew(() => waiter.WaitOne(), TaskCreationOptions.LongRunning);
            Thread.Sleep(200);
            Assert.False(blocked.IsCompleted);
            holder.Release();
            TestUtil.Finishes(blocked, "WaitOne after the release");
            Assert.True(blocked.IsCompletedSuccessfully, blocked.Exception?.ToString());
            Assert.True(waiter.IsHeld);
        }

        [Fact]
        public void DisposeReleasesTheLock()
        {
            string name = TestUtil.UniqueName("dispose");
            using Lock other = NewLock(name, owner: "other");
            Lock l = NewLock(name, owner: "disposer");
            l.WaitOne();
            Assert.False(other.TryWait());

            l.Dispose();
            bool taken = other.TryWait();
            Assert.True(taken, taken ? "" : "Dispose must release at once, not after a TTL; " + TestUtil.DescribeLock(_sidecar.Url, name));
            Assert.Throws<ObjectDisposedException>(() => l.IsHeld);
            Assert.Throws<ObjectDisposedException>(() => l.WaitOne());
            l.Dispose(); // idempotent
        }

        [Fact]
        public void DisposeCancelsABlockedWait()
        {
            string name = TestUtil.UniqueName("dispose-wait");
            using Lock holder = NewLock(name, owner: "holder");
            Lock waiter = NewLock(name, owner: "waiter");
            holder.WaitOne();
            Task blocked = Task.Factory.StartNew(() => waiter.WaitOne(), TaskCreationOptions.LongRunning);
            Thread.Sleep(200);
            waiter.Dispose();
            TestUtil.Finishes(blocked, "the wait on a disposed lock");
            Assert.IsType<ObjectDisposedException>(blocked.Exception?.InnerException);
            holder.Release();
            bool retaken = holder.TryWait();
            Assert.True(retaken, retaken ? "" : "the disposed waiter must not have taken it; " + TestUtil.DescribeLock(_sidecar.Url, name));
        }

        [Fact]
        public void ReleaseWithoutHoldingFails()
        {
            using Lock l = NewLock(TestUtil.UniqueName("notheld"));
            var e = Assert.Throws<MetaparticleException>(() => l.Release());
            Assert.Equal(ErrorCode.NotHeld, e.Code);
            Assert.Contains(l.Name, e.Message);
        }

        [Fact]
        public void AcquiredLockIsNotCollectedWhileHeld()
        {
            string name = TestUtil.UniqueName("rooted");
            WeakReference weak = AcquireAndDrop(name);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            Assert.True(weak.IsAlive, "a held lock must not be collected (its finalizer would release it)");
            using Lock other = NewLock(name, owner: "other");
            Assert.False(other.TryWait());
            ((Lock)weak.Target!).Dispose();
            Assert.True(other.TryWait());
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private WeakReference AcquireAndDrop(string name)
        {
            var l = NewLock(name, owner: "dropped");
            l.WaitOne();
            return new WeakReference(l);
        }
    }
}
