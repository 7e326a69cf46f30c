using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace Metaparticle.Sync.Interop
{
    /// <summary>
    /// Owns one native object and the callback state native code calls back with.
    /// </summary>
    /// <remarks>
    /// The callback state (the user's delegates) is reachable from native code
    /// only through a GCHandle passed as <c>user_data</c>. The GCHandle is
    /// strong, so the delegates stay alive for as long as the native object
    /// exists, and it is freed only after the native object has been freed
    /// (mp_*_free waits for a running callback and guarantees none starts
    /// afterwards). The callbacks themselves are static
    /// [UnmanagedCallersOnly] methods: no delegate is marshalled to a function
    /// pointer, so there is no thunk that the GC could collect.
    /// </remarks>
    internal abstract class CallbackOwningHandle : SafeHandle
    {
        private GCHandle _callbacks;

        protected CallbackOwningHandle()
            : base(IntPtr.Zero, ownsHandle: true)
        {
        }

        public override bool IsInvalid => handle == IntPtr.Zero;

        /// <summary>Takes ownership of a freshly created native object and its callback state.</summary>
        internal void Attach(IntPtr nativeObject, GCHandle callbacks)
        {
            _callbacks = callbacks;
            SetHandle(nativeObject);
        }

        protected abstract void FreeNative(IntPtr nativeObject);

        protected override bool ReleaseHandle()
        {
            IntPtr nativeObject = handle;
            GCHandle callbacks = _callbacks;
            if (callbacks.IsAllocated && CallbackScope.IsInside(callbacks.Target))
            {
                // The last reference was dropped inside one of this object's
                // own callbacks (e.g. Dispose() from OnLost). The native free
                // waits for the running callback to return, which is the one
                // on this very thread, so it must happen on another thread.
                ThreadPool.UnsafeQueueUserWorkItem(_ => Free(nativeObject, callbacks), null);
                return true;
            }
            Free(nativeObject, callbacks);
            return true;
        }

        private void Free(IntPtr nativeObject, GCHandle callbacks)
        {
            FreeNative(nativeObject);
            if (callbacks.IsAllocated)
            {
                callbacks.Free();
            }
        }
    }

    /// <summary>Owns an <c>mp_lock*</c>. Freeing it releases the lock if held.</summary>
    internal sealed class LockHandle : CallbackOwningHandle
    {
        public LockHandle()
        {
        }

        protected override void FreeNative(IntPtr nativeObject) => SyncNative.mp_lock_free(nativeObject);
    }

    /// <summary>Owns an <c>mp_election*</c>. Freeing it stops the election and gives up leadership.</summary>
    internal sealed class ElectionHandle : CallbackOwningHandle
    {
        public ElectionHandle()
        {
        }

        protected override void FreeNative(IntPtr nativeObject) => SyncNative.mp_election_free(nativeObject);
    }

    /// <summary>Which callback state, if any, the current thread is running a callback for.</summary>
    internal static class CallbackScope
    {
        [ThreadStatic]
        private static object? t_owner;

        internal static bool IsInside(object? owner) => owner is not null && ReferenceEquals(t_owner, owner);

        /// <summary>Marks the current thread as running a callback of <paramref name="owner"/>; returns what to restore.</summary>
        internal static object? Enter(object owner)
        {
            object? previous = t_owner;
            t_owner = owner;
            return previous;
        }

        internal static void Exit(object? previous) => t_owner = previous;
    }

    /// <summary>
    /// The managed side of one native object's callbacks: the user's delegates,
    /// reached from native code through the GCHandle passed as user_data.
    /// </summary>
    internal abstract class CallbackState
    {
        /// <summary>The delegate for callback <paramref name="which"/> and a description for error reports.</summary>
        internal abstract (Action? Callback, string Description) Select(int which);

        /// <summary>
        /// Runs a user callback at the native-to-managed boundary. Never lets an
        /// exception escape: unwinding into native code would terminate the
        /// process, so exceptions are reported (<see cref="MetaparticleCallbacks"/>)
        /// and the library carries on.
        /// </summary>
        internal static void Invoke(IntPtr userData, int which)
        {
            string description = "Metaparticle callback";
            try
            {
                if (GCHandle.FromIntPtr(userData).Target is not CallbackState state)
                {
                    return;
                }
                (Action? callback, string what) = state.Select(which);
                description = what;
                if (callback is null)
                {
                    return;
                }
                object? previous = CallbackScope.Enter(state);
                try
                {
                    callback();
                }
                finally
                {
                    CallbackScope.Exit(previous);
                }
            }
            catch (Exception e)
            {
                MetaparticleCallbacks.Report(description, e);
            }
        }
    }
}
