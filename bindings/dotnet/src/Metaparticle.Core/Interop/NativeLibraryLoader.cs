using System;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Metaparticle.Interop
{
    /// <summary>
    /// Finds libmetaparticle for every Metaparticle assembly that P/Invokes
    /// into it, and loads it once for all of them.
    /// </summary>
    /// <remarks>
    /// Order: the file named by <c>METAPARTICLE_NATIVE_LIBRARY</c> (for tests
    /// and custom builds); then the runtime's normal probing for
    /// "metaparticle" (the app directory, the package's
    /// runtimes/linux-x64/native folder through the app's deps.json, then the
    /// system loader, which finds a `cmake --install`ed copy); then
    /// libmetaparticle.so.0, the name a system install without the development
    /// symlink has.
    /// </remarks>
    internal static class NativeLibraryLoader
    {
        internal const string LibraryName = "metaparticle";
        internal const string PathVariable = "METAPARTICLE_NATIVE_LIBRARY";

        private static readonly object s_gate = new object();
        private static IntPtr s_handle;

        /// <summary>Routes <paramref name="assembly"/>'s imports of "metaparticle" through <see cref="Resolve"/>.</summary>
        internal static void Register(Assembly assembly)
        {
            try
            {
                NativeLibrary.SetDllImportResolver(assembly, Resolve);
            }
            catch (InvalidOperationException)
            {
                // A resolver is already set for this assembly (registered twice): keep it.
            }
        }

        private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
        {
            if (libraryName != LibraryName)
            {
                return IntPtr.Zero;
            }

            lock (s_gate)
            {
                // Failures are not cached: a later call may succeed once the
                // file is in place, and each one gets the full explanation.
                if (s_handle == IntPtr.Zero)
                {
                    s_handle = Load(assembly, searchPath);
                }
                return s_handle;
            }
        }

        private static IntPtr Load(Assembly assembly, DllImportSearchPath? searchPath)
        {
            string? path = Environment.GetEnvironmentVariable(PathVariable);
            if (!string.IsNullOrEmpty(path))
            {
                try
                {
                    return NativeLibrary.Load(path);
                }
                catch (Exception e) when (e is DllNotFoundException || e is BadImageFormatException)
                {
                    throw new DllNotFoundException(
                        $"Metaparticle: cannot load the native library named by {PathVariable}='{path}': {e.Message}", e);
                }
            }

            if (NativeLibrary.TryLoad(LibraryName, assembly, searchPath, out IntPtr handle) ||
                NativeLibrary.TryLoad("libmetaparticle.so.0", assembly, searchPath, out handle))
            {
                return handle;
            }

            throw new DllNotFoundException(
                "Metaparticle: the native library libmetaparticle.so was not found (or one of the shared libraries it " +
                "needs is missing: libcurl, libcjson, libyaml, OpenSSL, zlib). It ships in the Metaparticle.Core NuGet " +
                "package for linux-x64 and is copied next to the app on build; alternatively install it system-wide " +
                $"(cmake --install) or set {PathVariable} to its path. Check with: ldd libmetaparticle.so");
        }
    }
}
