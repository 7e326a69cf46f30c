using System;
using System.Runtime.InteropServices;

namespace Metaparticle.Interop
{
    /// <summary>P/Invoke declarations for the library-wide part of the C ABI (errors, memory, version).</summary>
    internal static partial class CoreNative
    {
        // An explicit static constructor runs before the first call of any
        // method below, so the resolver is in place before the first import
        // is bound.
        static CoreNative() => NativeLibraryLoader.Register(typeof(CoreNative).Assembly);

        /// <summary>Thread-local message of the last failure; never NULL. Not to be freed.</summary>
        [LibraryImport(NativeLibraryLoader.LibraryName)]
        internal static partial IntPtr mp_error_last();

        [LibraryImport(NativeLibraryLoader.LibraryName)]
        internal static partial int mp_error_last_code();

        /// <summary>Static name of a code; never NULL. Not to be freed.</summary>
        [LibraryImport(NativeLibraryLoader.LibraryName)]
        internal static partial IntPtr mp_error_name(int code);

        [LibraryImport(NativeLibraryLoader.LibraryName)]
        internal static partial void mp_free(IntPtr ptr);

        [LibraryImport(NativeLibraryLoader.LibraryName)]
        internal static partial IntPtr mp_version();
    }

    /// <summary>Turns native return codes into exceptions.</summary>
    internal static class NativeError
    {
        /// <summary>Throws for a failing return code. Call it on the thread that made the failing call,
        /// before any other native call: the message is thread-local and replaced by the next failure.</summary>
        internal static void Check(int rc)
        {
            if (rc != 0)
            {
                throw Create(rc);
            }
        }

        /// <summary>The exception for a failing return code (same threading rule as <see cref="Check"/>).</summary>
        internal static MetaparticleException Create(int rc)
        {
            var code = (ErrorCode)rc;
            string? message = Marshal.PtrToStringUTF8(CoreNative.mp_error_last());
            if (string.IsNullOrEmpty(message))
            {
                message = $"Metaparticle native call failed with {Marshal.PtrToStringUTF8(CoreNative.mp_error_name(rc))}";
            }
            return MetaparticleException.Create(code, message);
        }

        /// <summary>Copies a UTF-8 string the library handed out through <c>char **</c>, then frees it with mp_free.</summary>
        internal static string? TakeString(IntPtr utf8)
        {
            if (utf8 == IntPtr.Zero)
            {
                return null;
            }
            try
            {
                return Marshal.PtrToStringUTF8(utf8);
            }
            finally
            {
                CoreNative.mp_free(utf8);
            }
        }
    }
}
