using System;
using System.Runtime.InteropServices;
using Metaparticle.Interop;

namespace Metaparticle.Package.Interop
{
    /// <summary>P/Invoke declarations for the Package part of the C ABI (mp_in_container, mp_containerize*).</summary>
    internal static unsafe partial class PackageNative
    {
        static PackageNative() => NativeLibraryLoader.Register(typeof(PackageNative).Assembly);

        private const string Lib = NativeLibraryLoader.LibraryName;

        [LibraryImport(Lib)]
        internal static partial int mp_in_container(out int inside);

        /// <summary>
        /// Blocks: outside a container until the replicas are torn down; inside,
        /// runs <paramref name="mainFn"/> on the calling thread.
        /// </summary>
        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int mp_containerize(string? optionsJson, delegate* unmanaged[Cdecl]<IntPtr, int> mainFn,
                                                    IntPtr userData, out int exitCode);

        /// <summary>*outJson is owned by the caller (mp_free).</summary>
        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int mp_containerize_render(string? optionsJson, out IntPtr outJson);
    }
}
