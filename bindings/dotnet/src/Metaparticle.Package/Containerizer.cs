using System;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Metaparticle.Interop;
using Metaparticle.Package.Interop;

namespace Metaparticle.Package
{
    /// <summary>
    /// <c>Containerize(options, main)</c>: the program packages itself as a
    /// container image and runs replicas of itself.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Outside a container, <c>Containerize</c> builds an OCI image of this
    /// very program (the .NET runtime it runs on, the app's output folder and
    /// the shared libraries they need; no Dockerfile, no Docker daemon),
    /// pushes it when <see cref="Options.Publish"/> is set, and runs it with
    /// the chosen runner, streaming the replicas' output to this console, each
    /// line prefixed with the replica's name, until Ctrl-C (SIGINT) or SIGTERM.
    /// Then it removes what it started (unless <see cref="Options.KeepRunning"/>)
    /// and returns. <c>main</c> does not run on this machine.
    /// </para>
    /// <para>
    /// Inside the container (the image sets <c>METAPARTICLE_IN_CONTAINER=true</c>),
    /// the same call just runs <c>main</c>, so one program is both the
    /// deployment and the service:
    /// </para>
    /// <code>
    /// using static Metaparticle.Package.Containerizer;
    ///
    /// return Containerize(new Options { Ports = { 8080 }, Replicas = 4 }, () => Serve(8080));
    /// </code>
    /// <para>
    /// Signals: while <c>Containerize</c> runs outside a container, SIGINT and
    /// SIGTERM belong to it (your <see cref="Console.CancelKeyPress"/> handlers do
    /// not run meanwhile). The first one tears the replicas down; a second one
    /// ends the process at once, leaving them running. Only one
    /// <c>Containerize</c> may run per process.
    /// </para>
    /// </remarks>
    public static class Containerizer
    {
        private static readonly object s_signalInitGate = new object();
        private static bool s_signalsInitialized;

        /// <summary>
        /// True when this process runs in a container built by
        /// <c>Containerize</c>: <c>METAPARTICLE_IN_CONTAINER</c> is <c>true</c> or
        /// <c>1</c>. Set it to <c>false</c> to force "outside" in a container you
        /// run yourself.
        /// </summary>
        public static bool InContainer
        {
            get
            {
                NativeError.Check(PackageNative.mp_in_container(out int inside));
                return inside != 0;
            }
        }

        /// <summary>
        /// Runs <paramref name="main"/> in containers built from this program (see
        /// <see cref="Containerizer"/>).
        /// </summary>
        /// <returns>
        /// Inside the container: 0 once <paramref name="main"/> returned.
        /// Outside: 0 after Ctrl-C removed the replicas; for a job
        /// (<see cref="Options.JobSpec"/>), the first non-zero exit code among
        /// its instances. Suitable as the process's exit code.
        /// </returns>
        /// <exception cref="MetaparticleException">
        /// Invalid options (<see cref="ErrorCode.InvalidArgument"/>, naming the
        /// option); the registry refused the push or could not be reached
        /// (<c>MP_EREGISTRY</c>); the container engine could not be reached
        /// (<c>MP_EENGINE</c>; the message says how to start one or set
        /// <c>DOCKER_HOST</c>); another Containerize is running
        /// (<see cref="ErrorCode.InvalidState"/>).
        /// </exception>
        /// <remarks>An exception thrown by <paramref name="main"/> propagates out of this call.</remarks>
        public static int Containerize(Options options, Action main)
        {
            ArgumentNullException.ThrowIfNull(main);
            return Containerize(options, () =>
            {
                main();
                return 0;
            });
        }

        /// <summary>
        /// Runs <paramref name="main"/> in containers built from this program;
        /// inside, its result is returned (the container's exit code when your
        /// <c>Main</c> returns it).
        /// </summary>
        /// <inheritdoc cref="Containerize(Options, Action)"/>
        public static unsafe int Containerize(Options options, Func<int> main)
        {
            ArgumentNullException.ThrowIfNull(options);
            ArgumentNullException.ThrowIfNull(main);
            bool inside = InContainer;
            string json = OptionsJson.Serialize(options, inside ? null : AppLayout.Discover());
            if (!inside)
            {
                InitializeRuntimeSignalHandling();
            }
            var call = new MainCall(main);
            GCHandle handle = GCHandle.Alloc(call);
            int exitCode;
            try
            {
                int rc = PackageNative.mp_containerize(json, &RunMain, GCHandle.ToIntPtr(handle), out exitCode);
                if (rc != 0)
                {
                    throw NativeError.Create(rc);
                }
            }
            finally
            {
                handle.Free();
            }
            call.Failure?.Throw();
            return exitCode;
        }

        /// <summary>
        /// The asynchronous form: inside the container, awaits
        /// <paramref name="main"/> (on the caller's context); outside, builds and
        /// runs the replicas on a thread of its own, completing when they have
        /// been torn down.
        /// </summary>
        /// <inheritdoc cref="Containerize(Options, Action)"/>
        public static Task<int> ContainerizeAsync(Options options, Func<Task> main)
        {
            ArgumentNullException.ThrowIfNull(main);
            return ContainerizeAsync(options, async () =>
            {
                await main().ConfigureAwait(false);
                return 0;
            });
        }

        /// <summary>
        /// The asynchronous form whose <paramref name="main"/> returns an exit
        /// code (returned by the task inside the container).
        /// </summary>
        /// <inheritdoc cref="ContainerizeAsync(Options, Func{Task})"/>
        public static async Task<int> ContainerizeAsync(Options options, Func<Task<int>> main)
        {
            ArgumentNullException.ThrowIfNull(options);
            ArgumentNullException.ThrowIfNull(main);
            if (InContainer)
            {
                // The core checks the options inside too (the same errors on
                // both sides), then calls back; the callback does nothing, and
                // main runs here, asynchronously, instead of blocking a thread.
                ValidateInside(OptionsJson.Serialize(options, null));
                return await main().ConfigureAwait(false);
            }
            string json = OptionsJson.Serialize(options, AppLayout.Discover());
            // Outside, mp_containerize blocks until the replicas are torn down:
            // on a dedicated thread, not a pool thread.
            return await Task.Factory.StartNew(
                () => RunOutside(json),
                CancellationToken.None,
                TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach,
                TaskScheduler.Default).ConfigureAwait(false);
        }

        /// <summary>
        /// What <c>Containerize</c> would build and create for
        /// <paramref name="options"/>, without building a container, pushing or
        /// running anything (host files are read to compute the image's
        /// digests): the image reference, config and manifest, the Docker
        /// containers' create requests and the Kubernetes objects. For unit
        /// tests of your deployment ("code as config").
        /// </summary>
        /// <exception cref="MetaparticleException">Invalid options, or files that cannot be read.</exception>
        public static RenderResult Render(Options options)
        {
            ArgumentNullException.ThrowIfNull(options);
            string json = OptionsJson.Serialize(options, AppLayout.Discover());
            int rc = PackageNative.mp_containerize_render(json, out IntPtr output);
            if (rc != 0)
            {
                throw NativeError.Create(rc);
            }
            string rendered = NativeError.TakeString(output)
                ?? throw new MetaparticleException(ErrorCode.Error, "mp_containerize_render returned no JSON");
            return RenderResult.Parse(rendered);
        }

        private static unsafe int RunOutside(string json)
        {
            InitializeRuntimeSignalHandling();
            int rc = PackageNative.mp_containerize(json, &NoMain, IntPtr.Zero, out int exitCode);
            if (rc != 0)
            {
                throw NativeError.Create(rc);
            }
            return exitCode;
        }

        private static unsafe void ValidateInside(string json)
        {
            int rc = PackageNative.mp_containerize(json, &NoMain, IntPtr.Zero, out _);
            if (rc != 0)
            {
                throw NativeError.Create(rc);
            }
        }

        /// <summary>
        /// Makes the .NET runtime install its own signal handlers now, before
        /// mp_containerize installs its SIGINT/SIGTERM handlers: the runtime sets
        /// its handlers up lazily (on first console or signal use), and doing so
        /// during a run would replace the core's, so a Ctrl-C would end the
        /// process without removing the replicas. Once set up, the runtime does
        /// not install them again, and the core restores them when it returns.
        /// </summary>
        private static void InitializeRuntimeSignalHandling()
        {
            lock (s_signalInitGate)
            {
                if (s_signalsInitialized)
                {
                    return;
                }
                try
                {
                    // A registration that does nothing, removed at once: only its
                    // side effect (the runtime's signal handling is set up) is kept.
                    using (PosixSignalRegistration.Create(PosixSignal.SIGINT, static _ => { }))
                    {
                    }
                }
                catch (PlatformNotSupportedException)
                {
                    // Not on Linux: the native core is linux-x64 only anyway.
                }
                s_signalsInitialized = true;
            }
        }

        /// <summary>The user's main and what it threw, for the duration of one mp_containerize call.</summary>
        private sealed class MainCall
        {
            internal MainCall(Func<int> main) => Main = main;

            internal Func<int> Main { get; }

            internal ExceptionDispatchInfo? Failure { get; set; }
        }

        /// <summary>
        /// mp_main_fn: runs on the thread that called mp_containerize. No
        /// exception may unwind into native code: it is kept and rethrown by
        /// <see cref="Containerize(Options, Func{int})"/> once the native call returned.
        /// </summary>
        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static int RunMain(IntPtr userData)
        {
            MainCall? call = null;
            try
            {
                call = (MainCall)GCHandle.FromIntPtr(userData).Target!;
                return call.Main();
            }
            catch (Exception e)
            {
                if (call is not null)
                {
                    call.Failure = ExceptionDispatchInfo.Capture(e);
                }
                return 1;
            }
        }

        /// <summary>mp_main_fn that does nothing (the async forms run main themselves).</summary>
        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static int NoMain(IntPtr userData) => 0;
    }
}
