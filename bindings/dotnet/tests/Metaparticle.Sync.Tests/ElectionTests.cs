using System;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace Metaparticle.Sync.Tests
{
    /// <summary>Leader election against a real sidecar.</summary>
    public sealed class ElectionTests : IClassFixture<SidecarFixture>
    {
        private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(3);
        private readonly Sidecar _sidecar;

        public ElectionTests(SidecarFixture fixture) => _sidecar = fixture.Sidecar;

        /// <summary>A candidate with counters for its callbacks.</summary>
        private sealed class Candidate : IDisposable
        {
            private int _elected;
            private int _lost;

            public Candidate(string name, string sidecarUrl, string identity)
            {
                Election = new Election(name,
                    () =>
                    {
                        Interlocked.Increment(ref _elected);
                        Elected.Set();
                    },
                    () =>
                    {
                        Interlocked.Increment(ref _lost);
                        Lost.Set();
                    },
                    new ElectionOptions { SidecarUrl = sidecarUrl, Identity = identity, Ttl = Ttl });
            }

            public Election Election { get; }
            public ManualResetEventSlim Elected { get; } = new ManualResetEventSlim();
            public ManualResetEventSlim Lost { get; } = new ManualResetEventSlim();
            public int ElectedCount => Volatile.Read(ref _elected);
            public int LostCount => Volatile.Read(ref _lost);
            public Task? Running { get; set; }

            public void Dispose()
            {
                Election.Dispose();
                if (Running is not null)
                {
                    TestUtil.Finishes(Running, $"the run of {Election.Identity} after Dispose");
                }
                Elected.Dispose();
                Lost.Dispose();
            }
        }

        [Fact]
        public void ShuttingDownTheLeaderHandsLeadershipToTheOther()
        {
            string name = TestUtil.UniqueName("failover");
            using var a = new Candidate(name, _sidecar.Url, "candidate-a");
            using var b = new Candidate(name, _sidecar.Url, "candidate-b");
            a.Running = a.Election.RunAsync();
            Assert.True(a.Elected.Wait(TestUtil.Patience), "the first candidate was not elected");
            b.Running = b.Election.RunAsync();

            Assert.True(a.Election.IsLeader);
            Assert.Equal("candidate-a", a.Election.Leader);
            Assert.Equal("candidate-a", b.Election.Leader);
            Thread.Sleep(300);
            Assert.False(b.Election.IsLeader);
            Assert.Equal(0, b.ElectedCount);

            a.Election.Shutdown();
            TestUtil.Finishes(a.Running, "the leader's run after Shutdown");
            Assert.True(a.Running.IsCompletedSuccessfully, a.Running.Exception?.ToString());
            Assert.True(b.Elected.Wait(TestUtil.Patience), "the second candidate did not take over");
            Assert.True(b.Election.IsLeader);
            Assert.False(a.Election.IsLeader);
            Assert.Equal("candidate-b", b.Election.Leader);
            Assert.Equal(0, a.LostCount); // a shutdown is not a loss
        }

        [Fact]
        public void RunBlocksUntilShutdownFromAnotherThread()
        {
            // The seed's shape: election.Run() on a thread; Shutdown() from elsewhere.
            using var c = new Candidate(TestUtil.UniqueName("seed-shape"), _sidecar.Url, "seed");
            var run = new Thread(() => c.Election.Run());
            run.Start();
            Assert.True(c.Elected.Wait(TestUtil.Patience));
            Assert.True(run.IsAlive);
            c.Election.Shutdown();
            Assert.True(run.Join(TestUtil.Patience), "Run did not return after Shutdown");
            Assert.False(c.Election.IsLeader);
            Assert.Null(c.Election.Leader); // leadership was given up, not left to expire

            // Shutdown is final: a later Run returns at once.
            Task again = Task.Run(() => c.Election.Run());
            TestUtil.Finishes(again, "a Run after Shutdown");
            Assert.Equal(1, c.ElectedCount);
        }

        [Fact]
        public async Task RunAsyncEndsAsCanceledAndGivesUpLeadership()
        {
            string name = TestUtil.UniqueName("run-cancel");
            using var a = new Candidate(name, _sidecar.Url, "cancel-a");
            using var b = new Candidate(name, _sidecar.Url, "cancel-b");
            using var cts = new CancellationTokenSource();
            Task run = a.Election.RunAsync(cts.Token);
            Assert.True(a.Elected.Wait(TestUtil.Patience));
            b.Running = b.Election.RunAsync();

            cts.Cancel();
            TestUtil.Finishes(run, "the canceled run");
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
            Assert.True(b.Elected.Wait(TestUtil.Patience), "leadership was not handed over after the cancel");
            Assert.Equal(0, a.LostCount);
        }

        [Fact]
        public void CallbacksRunOnTheRunThreadAndExceptionsDoNotEndTheElection()
        {
            string name = TestUtil.UniqueName("callback-throws");
            int runThread = -1, callbackThread = -2;
            using var reported = new ManualResetEventSlim();
            EventHandler<CallbackExceptionEventArgs> handler = (_, args) =>
            {
                if (args.Source.Contains(name))
                {
                    reported.Set();
                }
            };
            MetaparticleCallbacks.UnhandledException += handler;
            try
            {
                using var election = new Election(name,
                    () =>
                    {
                        callbackThread = Environment.CurrentManagedThreadId;
                        throw new InvalidOperationException("boom from onLeader");
                    },
                    null,
                    new ElectionOptions { SidecarUrl = _sidecar.Url, Ttl = Ttl });
                var run = new Thread(() =>
                {
                    runThread = Environment.CurrentManagedThreadId;
                    election.Run();
                });
                run.Start();
                Assert.True(reported.Wait(TestUtil.Patience), "the onLeader exception was not reported");
                Assert.Equal(runThread, callbackThread);
                Assert.True(election.IsLeader); // still leading after the callback threw
                election.Shutdown();
                Assert.True(run.Join(TestUtil.Patience));
            }
            finally
            {
                MetaparticleCallbacks.UnhandledException -= handler;
            }
        }

        [Fact]
        public void LeaderThatLosesItsSidecarCallsOnLostAndContendsAgain()
        {
            using Sidecar own = Sidecar.Start();
            using var c = new Candidate(TestUtil.UniqueName("lose-and-return"), own.Url, "comeback");
            c.Running = c.Election.RunAsync();
            Assert.True(c.Elected.Wait(TestUtil.Patience));
            c.Elected.Reset();

            own.Kill();
            Assert.True(c.Lost.Wait(TestUtil.Patience), "onLost was not called after the sidecar died");
            Assert.False(c.Election.IsLeader);
            Assert.False(c.Running.IsCompleted); // an outage does not end the run

            using Sidecar again = own.StartAgainOnSameAddress();
            Assert.True(c.Elected.Wait(TestUtil.Patience), "the candidate did not lead again after the sidecar returned");
            Assert.Equal(2, c.ElectedCount);
            Assert.True(c.Election.IsLeader);
        }

        [Fact]
        public void DisposeWhileRunningStopsTheRun()
        {
            string name = TestUtil.UniqueName("dispose-running");
            var c = new Candidate(name, _sidecar.Url, "disposed");
            c.Running = c.Election.RunAsync();
            Assert.True(c.Elected.Wait(TestUtil.Patience));
            c.Dispose(); // waits for the run to finish
            Assert.True(c.Running.IsCompletedSuccessfully, c.Running.Exception?.ToString());
            using var other = new Election(name, null, null, new ElectionOptions { SidecarUrl = _sidecar.Url });
            Assert.Null(other.Leader);
        }
    }
}
