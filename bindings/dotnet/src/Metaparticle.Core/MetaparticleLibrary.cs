using System.Runtime.InteropServices;
using Metaparticle.Interop;

namespace Metaparticle
{
    /// <summary>Information about the loaded native library.</summary>
    public static class MetaparticleLibrary
    {
        /// <summary>
        /// The native library's version (<c>mp_version()</c>), e.g. <c>0.1.0</c>.
        /// Loads the library if it is not loaded yet, so this is also a cheap
        /// way to check that it can be found.
        /// </summary>
        public static string NativeVersion => Marshal.PtrToStringUTF8(CoreNative.mp_version()) ?? "";

        /// <summary>The name of a native error code, e.g. <c>MP_ETIMEOUT</c> (<c>mp_error_name()</c>).</summary>
        public static string ErrorName(ErrorCode code) => Marshal.PtrToStringUTF8(CoreNative.mp_error_name((int)code)) ?? "";
    }
}
