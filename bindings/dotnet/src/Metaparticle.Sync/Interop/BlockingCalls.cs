using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Metaparticle.Sync.Interop
{
    /// <summary>
    /// Tracks the blocking native calls (mp_lock_acquire, mp_election_run) in
    /// progress on one handle, so that a cancel (mp_lock_cancel /
    /// mp_election_stop) reliably reaches them, and so Dispose/Shutdown can
    /// refuse calls that start afterwards.
    /// </summary>
    /// <remarks>
    /// Why repeat a cancel: the core clears its cancel flag when an acquire or
    /// a run begins (so a stale cancel cannot affect a later call), and a cancel
    /// with nothing waiting is a no-op. A cancel sent in the instant between
    /// this class recording a call and the native call starting to wait would
    /// therefore be lost, and the call would block forever. So the cancel is
    /// sent at once and then every <see cref="RepeatInterval"/> until each call
    /// it was meant for has returned; normally the first one lands and the loop
    /// never runs.
    ///
    /// Memory safety: a caller holds a reference on the SafeHandle
    /// (DangerousAddRef) from before <see cref="TryEnter"/> until after
    /// <see cref="Exit"/>, and signals are sent under the same lock that
    /// <see cref="Exit"/> takes, only for calls still recorded. So whenever a
    /// signal is sent, the native object is alive and the raw pointer is valid,
    /// even if the handle was disposed meanwhile.
    /// </remarks>
    internal sealed class BlockingCalls
    {
        internal static readonly TimeSpan RepeatInterval = TimeSpan.FromMilliseconds(20);

        private readonly object _gate = new object();
        private readonly HashSet<Call> _inFlight = new HashSet<Call>();
        private bool _closed;

        /// <summary>One blocking call; identity only.</summary>
        internal sealed class Call
        {
        }

        /// <summary>True once <see cref="Close"/> was called.</summary>
        internal bool IsClosed
        {
            get
            {
                lock (_gate)
                {
                    return _closed;
                }
            }
        }

        /// <summary>Records a call about to start; false if <see cref="Close"/> was called.</summary>
        internal bool TryEnter(out Call call)
        {
            call = new Call();
            lock (_gate)
            {
                if (_closed)
                {
                    return false;
                }
                _inFlight.Add(call);
                return true;
            }
        }

        /// <summary>Records that a call returned. After this, no signal is sent for it.</summary>
        internal void Exit(Call call)
        {
            lock (_gate)
            {
                _inFlight.Remove(call);
            }
        }

        /// <summary>Refuses calls from now on and signals every call in flight until it returns.</summary>
        internal void Close(Action signal)
        {
            Call[] targets;
            lock (_gate)
            {
                _closed = true;
                targets = new Call[_inFlight.Count];
                _inFlight.CopyTo(targets);
            }
            SignalUntilReturned(signal, targets);
        }

        /// <summary>Signals every call in flight now, until each has returned.</summary>
        internal void SignalAll(Action signal)
        {
            Call[] targets;
            lock (_gate)
            {
                targets = new Call[_inFlight.Count];
                _inFlight.CopyTo(targets);
            }
            SignalUntilReturned(signal, targets);
        }

        /// <summary>
        /// Sends <paramref name="signal"/> now (on this thread) and, while any of
        /// <paramref name="targets"/> is still in flight, again from the thread
        /// pool. Never blocks: it may be called from a callback running on the
        /// very thread that is inside the blocking call.
        /// </summary>
        internal void SignalUntilReturned(Action signal, IReadOnlyCollection<Call> targets)
        {
            if (targets.Count == 0 || !SignalIfInFlight(signal, targets))
            {
                return;
            }
            _ = RepeatAsync(signal, targets);
        }

        private async Task RepeatAsync(Action signal, IReadOnlyCollection<Call> targets)
        {
            do
            {
                await Task.Delay(RepeatInterval).ConfigureAwait(false);
            }
            while (SignalIfInFlight(signal, targets));
        }

        private bool SignalIfInFlight(Action signal, IReadOnlyCollection<Call> targets)
        {
            lock (_gate)
            {
                bool any = false;
                foreach (Call call in targets)
                {
                    if (_inFlight.Contains(call))
                    {
                        any = true;
                        break;
                    }
                }
                if (any)
                {
                    // Under the gate: Exit() cannot run meanwhile, so the
                    // caller's handle reference is still held (see remarks).
                    signal();
                }
                return any;
            }
        }
    }
}
