using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Metaparticle.Interop;
using Metaparticle.Sync.Interop;

namespace Metaparticle.Sync
{
    /// <summary>
    /// Leader election: among all candidates for the same name, one leads at a
    /// time, for as long as it stays healthy.
    /// </summary>
    /// <remarks>
    /// <para>
    /// <see cref="Run"/> contends for leadership and blocks until
    /// <see cref="Shutdown"/>. When this candidate is elected, the onLeader
    /// callback runs; when it stops leading for any reason other than
    /// Shutdown (the sidecar became unreachable, the hold lapsed), onLost runs
    /// and the candidate contends again. Both callbacks run on the thread that
    /// called <see cref="Run"/> (for <see cref="RunAsync"/>, a thread of its
    /// own) while leadership is renewed on a library thread; an exception they
    /// throw is reported through <see cref="MetaparticleCallbacks"/> and the
    /// election goes on.
    /// </para>
    /// <para>
    /// <see cref="Shutdown"/> is final: it gives leadership up at once (so
    /// another candidate takes over within milliseconds), makes a running
    /// <see cref="Run"/> return, and any later Run returns at once. Create a new
    /// Election to contend again. <see cref="Dispose"/> shuts down and frees
    /// the native election.
    /// </para>
    /// <para>All members are thread-safe.</para>
    /// </remarks>
    public sealed class Election : IDisposable
    {
        private readonly ElectionHandle _handle;
        private readonly BlockingCalls _runs = new BlockingCalls();

        /// <summary>Creates an election for <paramref name="name"/> (the seed API).</summary>
        /// <param name="name">A Kubernetes object name (lowercase letters, digits, '-', '.').</param>
        /// <param name="onLeader">Called when this candidate becomes the leader (may be null).</param>
        /// <param name="onLost">Called when it stops being the leader other than by <see cref="Shutdown"/> (may be null).</param>
        /// <exception cref="MetaparticleException">The name or an option is invalid (<see cref="ErrorCode.InvalidArgument"/>).</exception>
        public Election(string name, Action? onLeader, Action? onLost)
            : this(name, onLeader, onLost, null)
        {
        }

        /// <summary>Creates an election that uses the sidecar at <paramref name="sidecarUrl"/> (the original API's <c>baseUrl</c>).</summary>
        public Election(string name, string sidecarUrl, Action? onLeader, Action? onLost)
            : this(name, onLeader, onLost, new ElectionOptions { SidecarUrl = sidecarUrl ?? throw new ArgumentNullException(nameof(sidecarUrl)) })
        {
        }

        /// <summary>Creates an election with <paramref name="options"/> (null: defaults).</summary>
        /// <exception cref="MetaparticleException">The name or an option is invalid (<see cref="ErrorCode.InvalidArgument"/>).</exception>
        public unsafe Election(string name, Action? onLeader, Action? onLost, ElectionOptions? options)
        {
            ArgumentNullException.ThrowIfNull(name);
            uint ttl = OptionConversion.TtlSeconds(options?.Ttl, nameof(options));
            var callbacks = new Callbacks(name, onLeader, onLost);

            var handle = new ElectionHandle();
            GCHandle callbackRoot = GCHandle.Alloc(callbacks);
            IntPtr sidecarUrl = IntPtr.Zero, identity = IntPtr.Zero;
            try
            {
                sidecarUrl = OptionConversion.Utf8(options?.SidecarUrl);
                identity = OptionConversion.Utf8(options?.Identity);
                var native = new MpElectionOptions
                {
                    Version = MpElectionOptions.CurrentVersion,
                    SidecarUrl = sidecarUrl,
                    Identity = identity,
                    TtlSeconds = ttl,
                    OnLeader = onLeader is null ? null : &Callbacks.OnLeaderNative,
                    OnLost = onLost is null ? null : &Callbacks.OnLostNative,
                    UserData = GCHandle.ToIntPtr(callbackRoot),
                };
                int rc = SyncNative.mp_election_create(out IntPtr raw, name, &native);
                if (rc != 0)
                {
                    throw NativeError.Create(rc);
                }
                handle.Attach(raw, callbackRoot);
            }
            catch
            {
                callbackRoot.Free();
                handle.Dispose();
                throw;
            }
            finally
            {
                OptionConversion.Free(sidecarUrl);
                OptionConversion.Free(identity);
            }

            _handle = handle;
            Name = name;
            Identity = Marshal.PtrToStringUTF8(SyncNative.mp_election_identity(_handle)) ?? "";
        }

        /// <summary>The election's name.</summary>
        public string Name { get; }

        /// <summary>This candidate's identity, as recorded when it leads.</summary>
        public string Identity { get; }

        /// <summary>True while this candidate is the leader.</summary>
        /// <exception cref="ObjectDisposedException">The election was disposed.</exception>
        public bool IsLeader
        {
            get
            {
                int rc = SyncNative.mp_election_is_leader(_handle, out int leader);
                NativeError.Check(rc);
                return leader != 0;
            }
        }

        /// <summary>
        /// The current leader's identity, asked of the sidecar now (a network
        /// call), or null when nobody leads.
        /// </summary>
        /// <exception cref="SidecarUnreachableException">The sidecar could not be reached.</exception>
        /// <exception cref="ObjectDisposedException">The election was disposed.</exception>
        public string? Leader
        {
            get
            {
                int rc = SyncNative.mp_election_leader(_handle, out IntPtr leader);
                NativeError.Check(rc);
                return NativeError.TakeString(leader);
            }
        }

        /// <summary>
        /// Contends for leadership, leads, contends again after a loss; blocks
        /// until <see cref="Shutdown"/> or <see cref="Dispose"/>. Sidecar
        /// outages do not end it: they are retried. Returns at once if the
        /// election was already shut down.
        /// </summary>
        /// <exception cref="MetaparticleException">Already running on another thread (<see cref="ErrorCode.InvalidState"/>).</exception>
        public void Run() => RunCore(CancellationToken.None);

        /// <summary>
        /// Runs the election on a thread of its own until <see cref="Shutdown"/>
        /// (the task completes) or until <paramref name="cancellationToken"/> is
        /// canceled (leadership is given up, as by <see cref="Shutdown"/>, and
        /// the task ends as canceled).
        /// </summary>
        public Task RunAsync(CancellationToken cancellationToken = default)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return Task.FromCanceled(cancellationToken);
            }
            return Task.Factory.StartNew(
                () => RunCore(cancellationToken),
                cancellationToken,
                TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach,
                TaskScheduler.Default);
        }

        /// <summary>
        /// Ends the election: gives leadership up at once if held (onLost is not
        /// called), makes <see cref="Run"/> return, and makes later runs return
        /// at once. Does not wait; callable from the callbacks and any thread.
        /// </summary>
        public void Shutdown() => _runs.Close(StopNative);

        /// <summary>Shuts down (see <see cref="Shutdown"/>) and frees the native election, once any running Run has returned.</summary>
        public void Dispose()
        {
            if (_handle.IsClosed)
            {
                return;
            }
            Shutdown();
            // With a Run in progress this only drops our reference: the
            // native free happens when Run returns (it holds one too).
            _handle.Dispose();
        }

        private void StopNative() => SyncNative.mp_election_stop(_handle.DangerousGetHandle());

        private void RunCore(CancellationToken cancellationToken)
        {
            bool addedRef = false;
            MetaparticleException? error = null;
            try
            {
                _handle.DangerousAddRef(ref addedRef);
                if (!_runs.TryEnter(out BlockingCalls.Call call))
                {
                    return; // shut down: nothing to run
                }
                try
                {
                    using CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
                        static state =>
                        {
                            var (self, c) = ((Election, BlockingCalls.Call))state!;
                            self._runs.SignalUntilReturned(self.StopNative, new[] { c });
                        },
                        (this, call));
                    int rc = SyncNative.mp_election_run(_handle.DangerousGetHandle());
                    if (rc != 0)
                    {
                        error = NativeError.Create(rc);
                    }
                }
                finally
                {
                    _runs.Exit(call);
                }
            }
            finally
            {
                if (addedRef)
                {
                    _handle.DangerousRelease();
                }
            }

            if (error is not null)
            {
                throw error;
            }
            if (!_runs.IsClosed)
            {
                // Not shut down, so the run ended because the token was canceled.
                cancellationToken.ThrowIfCancellationRequested();
            }
        }

        /// <summary>The election's callbacks, reached from native code through a GCHandle (see <see cref="CallbackOwningHandle"/>).</summary>
        private sealed class Callbacks : CallbackState
        {
            private const int Leader = 0;
            private const int Lost = 1;
            private readonly string _name;
            private readonly Action? _onLeader;
            private readonly Action? _onLost;

            internal Callbacks(string name, Action? onLeader, Action? onLost)
            {
                _name = name;
                _onLeader = onLeader;
                _onLost = onLost;
            }

            internal override (Action? Callback, string Description) Select(int which) => which == Leader
                ? (_onLeader, $"Election '{_name}' onLeader")
                : (_onLost, $"Election '{_name}' onLost");

            [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
            internal static void OnLeaderNative(IntPtr election, IntPtr userData) => Invoke(userData, Leader);

            [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
            internal static void OnLostNative(IntPtr election, IntPtr userData) => Invoke(userData, Lost);
        }
    }
}
