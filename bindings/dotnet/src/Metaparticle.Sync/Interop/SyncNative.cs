using System;
using System.Runtime.InteropServices;
using Metaparticle.Interop;

namespace Metaparticle.Sync.Interop
{
    /// <summary><c>mp_lock_options</c> (version 1). Strings are UTF-8, owned by the caller and copied by the library.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct MpLockOptions
    {
        internal const uint CurrentVersion = 1; // MP_LOCK_OPTIONS_VERSION

        public uint Version;
        public IntPtr SidecarUrl;
        public IntPtr Owner;
        public uint TtlSeconds;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void> OnLost;
        public IntPtr UserData;
    }

    /// <summary><c>mp_election_options</c> (version 1).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct MpElectionOptions
    {
        internal const uint CurrentVersion = 1; // MP_ELECTION_OPTIONS_VERSION

        public uint Version;
        public IntPtr SidecarUrl;
        public IntPtr Identity;
        public uint TtlSeconds;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void> OnLeader;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void> OnLost;
        public IntPtr UserData;
    }

    /// <summary>
    /// P/Invoke declarations for the Sync part of the C ABI.
    /// </summary>
    /// <remarks>
    /// Calls that may run concurrently with Dispose take the SafeHandle, so the
    /// marshaller holds a reference on it for the duration of the call and the
    /// native object cannot be freed underneath. The blocking calls (acquire,
    /// run) and their cancel/stop counterparts take the raw pointer instead:
    /// their callers hold that reference themselves, across the bookkeeping
    /// that lets a cancel be repeated until it lands (see <see cref="BlockingCalls"/>).
    /// </remarks>
    internal static unsafe partial class SyncNative
    {
        static SyncNative() => NativeLibraryLoader.Register(typeof(SyncNative).Assembly);

        private const string Lib = NativeLibraryLoader.LibraryName;

        // ---- locks ----

        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int mp_lock_create(out IntPtr lockOut, string name, MpLockOptions* opts);

        [LibraryImport(Lib)]
        internal static partial void mp_lock_free(IntPtr lockPtr);

        [LibraryImport(Lib)]
        internal static partial int mp_lock_acquire(IntPtr lockPtr, int timeoutMs);

        [LibraryImport(Lib)]
        internal static partial int mp_lock_try_acquire(LockHandle lockHandle);

        [LibraryImport(Lib)]
        internal static partial int mp_lock_release(LockHandle lockHandle);

        [LibraryImport(Lib)]
        internal static partial int mp_lock_cancel(IntPtr lockPtr);

        [LibraryImport(Lib)]
        internal static partial int mp_lock_is_held(LockHandle lockHandle, out int held);

        [LibraryImport(Lib)]
        internal static partial int mp_lock_token(LockHandle lockHandle, out ulong token);

        /// <summary>Static for the handle's lifetime; not to be freed.</summary>
        [LibraryImport(Lib)]
        internal static partial IntPtr mp_lock_owner(LockHandle lockHandle);

        // ---- elections ----

        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int mp_election_create(out IntPtr electionOut, string name, MpElectionOptions* opts);

        [LibraryImport(Lib)]
        internal static partial void mp_election_free(IntPtr election);

        [LibraryImport(Lib)]
        internal static partial int mp_election_run(IntPtr election);

        [LibraryImport(Lib)]
        internal static partial int mp_election_stop(IntPtr election);

        /// <summary>Static for the handle's lifetime; not to be freed.</summary>
        [LibraryImport(Lib)]
        internal static partial IntPtr mp_election_identity(ElectionHandle election);

        [LibraryImport(Lib)]
        internal static partial int mp_election_is_leader(ElectionHandle election, out int isLeader);

        /// <summary>*leader is a new string for mp_free, or NULL when nobody leads.</summary>
        [LibraryImport(Lib)]
        internal static partial int mp_election_leader(ElectionHandle election, out IntPtr leader);
    }
}
