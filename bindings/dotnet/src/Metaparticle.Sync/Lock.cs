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
    /// A distributed lock: mutual exclusion across processes, pods and
    /// machines, held through the <c>mp-sidecar</c> lock service.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Creating a lock does not contact the sidecar. <see cref="WaitOne()"/>
    /// blocks until the lock is acquired; <see cref="TryWait"/> makes one
    /// attempt; <see cref="Release"/> gives it up at once, so a waiter
    /// elsewhere acquires within milliseconds. While held, the native library
    /// renews the lock in the background every third of its TTL.
    /// </para>
    /// <para>
    /// Loss: if a renewal cannot be confirmed in time, the lock is reported
    /// lost before its TTL could have expired for anyone else. With an
    /// <see cref="LockOptions.OnLost"/> handler, that handler is called (on a
    /// library thread) and the program goes on. Without one, the process prints
    /// why to standard error and exits with status 1: code that believes it
    /// holds a lock must not keep running once it does not.
    /// </para>
    /// <para>
    /// Lifetime: a lock that was acquired stays reachable (it is not garbage
    /// collected, so it is not released behind the program's back) until
    /// <see cref="Release"/> or <see cref="Dispose"/>. Disposing releases the
    /// lock if held and cancels a wait in progress.
    /// </para>
    /// <para>All members are thread-safe.</para>
    /// </remarks>
    public sealed class Lock : IDisposable
    {
        private const int MP_ETIMEOUT = (int)ErrorCode.Timeout;
        private const int MP_EBUSY = (int)ErrorCode.Busy;
        private const int MP_ECANCELED = (int)ErrorCode.Canceled;

        private readonly LockHandle _handle;
        private readonly BlockingCalls _waits = new BlockingCalls();
        private readonly object _rootGate = new object();
        private GCHandle _heldRoot;

        /// <summary>Creates a lock named <paramref name="name"/> with default options (the seed API).</summary>
        /// <param name="name">A Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters.</param>
        /// <exception cref="MetaparticleException">The name or an option is invalid (<see cref="ErrorCode.InvalidArgument"/>).</exception>
        public Lock(string name)
            : this(name, (LockOptions?)null)
        {
        }

        /// <summary>Creates a lock that uses the sidecar at <paramref name="sidecarUrl"/> (the original API's <c>baseUri</c>).</summary>
        public Lock(string name, string sidecarUrl)
            : this(name, new LockOptions { SidecarUrl = sidecarUrl ?? throw new ArgumentNullException(nameof(sidecarUrl)) })
        {
        }

        /// <summary>Creates a lock that calls <paramref name="onLost"/> instead of exiting the process when the lock is lost.</summary>
        public Lock(string name, Action onLost)
            : this(name, new LockOptions { OnLost = onLost ?? throw new ArgumentNullException(nameof(onLost)) })
        {
        }

        /// <summary>Creates a lock with <paramref name="options"/> (null: defaults).</summary>
        /// <exception cref="MetaparticleException">The name or an option is invalid (<see cref="ErrorCode.InvalidArgument"/>).</exception>
        public unsafe Lock(string name, LockOptions? options)
        {
            ArgumentNullException.ThrowIfNull(name);
            uint ttl = OptionConversion.TtlSeconds(options?.Ttl, nameof(options));
            var callbacks = new Callbacks(name, options?.OnLost);

            // Created before the native object, so nothing can fail between
            // creating the native object and handing it to its owner.
            var handle = new LockHandle();
            GCHandle callbackRoot = GCHandle.Alloc(callbacks);
            IntPtr sidecarUrl = IntPtr.Zero, owner = IntPtr.Zero;
            try
            {
                sidecarUrl = OptionConversion.Utf8(options?.SidecarUrl);
                owner = OptionConversion.Utf8(options?.Owner);
                var native = new MpLockOptions
                {
                    Version = MpLockOptions.CurrentVersion,
                    SidecarUrl = sidecarUrl,
                    Owner = owner,
                    TtlSeconds = ttl,
                    OnLost = callbacks.OnLost is null ? null : &Callbacks.OnLostNative,
                    UserData = GCHandle.ToIntPtr(callbackRoot),
                };
                int rc = SyncNative.mp_lock_create(out IntPtr raw, name, &native);
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
                // The library copied the strings.
                OptionConversion.Free(sidecarUrl);
                OptionConversion.Free(owner);
            }

            _handle = handle;
            Name = name;
            Owner = Marshal.PtrToStringUTF8(SyncNative.mp_lock_owner(_handle)) ?? "";
        }

        /// <summary>The lock's name.</summary>
        public string Name { get; }

        /// <summary>The holder identity this lock acquires as (e.g. <c>host/1234</c>).</summary>
        public string Owner { get; }

        /// <summary>
        /// True while this handle holds the lock: acquired, not released, not
        /// lost, and the last renewal was confirmed recently enough.
        /// </summary>
        /// <exception cref="ObjectDisposedException">The lock was disposed.</exception>
        public bool IsHeld
        {
            get
            {
                int rc = SyncNative.mp_lock_is_held(_handle, out int held);
                NativeError.Check(rc);
                return held != 0;
            }
        }

        /// <summary>
        /// The fencing token of the current hold: strictly increasing across all
        /// holders of this lock name, unchanged by renewals. Pass it to storage
        /// that rejects writes carrying an older token.
        /// </summary>
        /// <exception cref="MetaparticleException">The lock is not held (<see cref="ErrorCode.NotHeld"/>).</exception>
        /// <exception cref="ObjectDisposedException">The lock was disposed.</exception>
        public ulong Token
        {
            get
            {
                int rc = SyncNative.mp_lock_token(_handle, out ulong token);
                NativeError.Check(rc);
                return token;
            }
        }

        /// <summary>Blocks until the lock is acquired.</summary>
        /// <exception cref="SidecarUnreachableException">The sidecar could not be reached (the message names the address).</exception>
        /// <exception cref="MetaparticleException">Another failure, e.g. <see cref="ErrorCode.InvalidState"/> when this handle already holds the lock (locks are not re-entrant).</exception>
        /// <exception cref="ObjectDisposedException">The lock was disposed, also while waiting.</exception>
        public void WaitOne() => Acquire(-1, CancellationToken.None);

        /// <summary>Waits up to <paramref name="timeout"/> for the lock (<see cref="Timeout.InfiniteTimeSpan"/>: forever).</summary>
        /// <returns>True if acquired, false if the timeout passed first.</returns>
        public bool WaitOne(TimeSpan timeout) => Acquire(OptionConversion.TimeoutMilliseconds(timeout, nameof(timeout)), CancellationToken.None);

        /// <summary>Waits up to <paramref name="millisecondsTimeout"/> ms for the lock (-1: forever).</summary>
        /// <returns>True if acquired, false if the timeout passed first.</returns>
        public bool WaitOne(int millisecondsTimeout)
        {
            if (millisecondsTimeout < -1)
            {
                throw new ArgumentOutOfRangeException(nameof(millisecondsTimeout), millisecondsTimeout, "Must be -1 (wait forever) or more.");
            }
            return Acquire(millisecondsTimeout, CancellationToken.None);
        }

        /// <summary>
        /// Waits for the lock without blocking the caller. Cancelling
        /// <paramref name="cancellationToken"/> cancels the wait in the native
        /// library (<c>mp_lock_cancel</c>); the task then ends as canceled and
        /// the lock is not held.
        /// </summary>
        /// <param name="timeout">How long to wait; null or <see cref="Timeout.InfiniteTimeSpan"/>: forever.</param>
        /// <param name="cancellationToken">Cancels the wait.</param>
        /// <returns>True if acquired, false if the timeout passed first.</returns>
        public Task<bool> WaitOneAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        {
            int timeoutMs = OptionConversion.TimeoutMilliseconds(timeout, nameof(timeout));
            ObjectDisposedException.ThrowIf(_waits.IsClosed, this);
            if (cancellationToken.IsCancellationRequested)
            {
                return Task.FromCanceled<bool>(cancellationToken);
            }
            // The C ABI's acquire blocks, so the wait gets a thread of its own
            // (LongRunning) rather than tying up a thread-pool thread for as
            // long as someone else holds the lock.
            return Task.Factory.StartNew(
                () => Acquire(timeoutMs, cancellationToken),
                cancellationToken,
                TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach,
                TaskScheduler.Default);
        }

        /// <summary>Waits for the lock without blocking the caller, until acquired or canceled.</summary>
        public Task WaitOneAsync(CancellationToken cancellationToken) => WaitOneAsync(null, cancellationToken);

        /// <summary>Makes one attempt to acquire the lock.</summary>
        /// <returns>True if acquired, false if someone else holds it.</returns>
        /// <exception cref="SidecarUnreachableException">The sidecar could not be reached.</exception>
        public bool TryWait()
        {
            int rc = SyncNative.mp_lock_try_acquire(_handle);
            if (rc == MP_EBUSY)
            {
                return false;
            }
            NativeError.Check(rc);
            Root();
            return true;
        }

        /// <summary>
        /// Gives the lock up at once: renewals stop and the sidecar clears the
        /// holder, so a waiter acquires within milliseconds.
        /// </summary>
        /// <exception cref="MetaparticleException">The lock is not held by this handle (<see cref="ErrorCode.NotHeld"/>), e.g. because it was lost.</exception>
        public void Release()
        {
            int rc = SyncNative.mp_lock_release(_handle);
            MetaparticleException? error = rc != 0 ? NativeError.Create(rc) : null;
            Unroot(); // the hold is over either way
            if (error is not null)
            {
                throw error;
            }
        }

        /// <summary>
        /// Cancels a wait in progress (<see cref="WaitOne()"/>, <see cref="WaitOneAsync(TimeSpan?, CancellationToken)"/>), releases
        /// the lock if held, and frees the native lock. Safe to call more than
        /// once, from any thread, and from the lock's OnLost callback.
        /// </summary>
        public void Dispose()
        {
            if (_handle.IsClosed)
            {
                return;
            }
            // Blocked waits return (and fail with ObjectDisposedException);
            // the native free then happens when the last of them returns.
            _waits.Close(CancelNative);
            Unroot();
            _handle.Dispose();
        }

        private void CancelNative() => SyncNative.mp_lock_cancel(_handle.DangerousGetHandle());

        /// <summary>The blocking acquire behind every WaitOne form. Runs on the caller's thread.</summary>
        private bool Acquire(int timeoutMs, CancellationToken cancellationToken)
        {
            bool addedRef = false;
            int rc;
            MetaparticleException? error = null;
            try
            {
                // Throws ObjectDisposedException if already disposed. Held
                // until after Exit(): see BlockingCalls for why.
                _handle.DangerousAddRef(ref addedRef);
                if (!_waits.TryEnter(out BlockingCalls.Call call))
                {
                    throw new ObjectDisposedException(GetType().FullName);
                }
                try
                {
                    using CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
                        static state =>
                        {
                            var (self, c) = ((Lock, BlockingCalls.Call))state!;
                            self._waits.SignalUntilReturned(self.CancelNative, new[] { c });
                        },
                        (this, call));
                    rc = SyncNative.mp_lock_acquire(_handle.DangerousGetHandle(), timeoutMs);
                    if (rc == 0)
                    {
                        Root();
                    }
                    else if (rc != MP_ETIMEOUT && rc != MP_ECANCELED)
                    {
                        // Read the thread-local message before anything else can replace it.
                        error = NativeError.Create(rc);
                    }
                }
                finally
                {
                    _waits.Exit(call);
                }
            }
            finally
            {
                if (addedRef)
                {
                    _handle.DangerousRelease();
                }
            }

            switch (rc)
            {
                case 0:
                    return true;
                case MP_ETIMEOUT:
                    return false;
                case MP_ECANCELED:
                    if (_waits.IsClosed)
                    {
                        throw new ObjectDisposedException(GetType().FullName, $"Lock '{Name}' was disposed while waiting for it.");
                    }
                    cancellationToken.ThrowIfCancellationRequested();
                    throw new MetaparticleException(ErrorCode.Canceled, $"acquiring lock '{Name}' was canceled");
                default:
                    throw error!;
            }
        }

        /// <summary>Keeps this object alive while it holds the lock (see remarks on the class).</summary>
        private void Root()
        {
            lock (_rootGate)
            {
                if (!_heldRoot.IsAllocated)
                {
                    _heldRoot = GCHandle.Alloc(this);
                }
            }
        }

        private void Unroot()
        {
            lock (_rootGate)
            {
                if (_heldRoot.IsAllocated)
                {
                    _heldRoot.Free();
                }
            }
        }

        /// <summary>The lock's callbacks, reached from native code through a GCHandle (see <see cref="CallbackOwningHandle"/>).</summary>
        private sealed class Callbacks : CallbackState
        {
            private const int Lost = 0;
            private readonly string _name;

            internal Callbacks(string name, Action? onLost)
            {
                _name = name;
                OnLost = onLost;
            }

            internal Action? OnLost { get; }

            internal override (Action? Callback, string Description) Select(int which) =>
                (OnLost, $"Lock '{_name}' OnLost");

            [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
            internal static void OnLostNative(IntPtr nativeLock, IntPtr userData) => Invoke(userData, Lost);
        }
    }
}
