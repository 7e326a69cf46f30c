using System;

namespace Metaparticle
{
    /// <summary>Describes an exception thrown by user code run as a Metaparticle callback.</summary>
    public sealed class CallbackExceptionEventArgs : EventArgs
    {
        internal CallbackExceptionEventArgs(string source, Exception exception)
        {
            Source = source;
            Exception = exception;
        }

        /// <summary>Which callback failed, e.g. <c>Lock 'orders' OnLost</c>.</summary>
        public string Source { get; }

        /// <summary>The exception the callback threw.</summary>
        public Exception Exception { get; }
    }

    /// <summary>
    /// What happens to exceptions thrown by callbacks (a lock's OnLost, an
    /// election's onLeader / onLost).
    /// </summary>
    /// <remarks>
    /// Callbacks are called by the native library, from its own threads or from
    /// the thread running an election. An exception must never unwind into
    /// native code (that would terminate the process), so each one is caught,
    /// reported here, and the library carries on: the lock or election keeps
    /// working. With no handler attached the report goes to standard error.
    /// </remarks>
    public static class MetaparticleCallbacks
    {
        /// <summary>
        /// Raised, on the callback's thread, for each exception a callback threw.
        /// Exceptions thrown by the handlers themselves are written to standard
        /// error and otherwise ignored.
        /// </summary>
        public static event EventHandler<CallbackExceptionEventArgs>? UnhandledException;

        /// <summary>Reports an exception caught at a native-to-managed boundary. Never throws.</summary>
        internal static void Report(string source, Exception exception)
        {
            try
            {
                EventHandler<CallbackExceptionEventArgs>? handlers = UnhandledException;
                if (handlers is null)
                {
                    Console.Error.WriteLine($"metaparticle: {source} threw (ignored; the library continues): {exception}");
                    return;
                }
                handlers(null, new CallbackExceptionEventArgs(source, exception));
            }
            catch (Exception handlerFailure)
            {
                try
                {
                    Console.Error.WriteLine($"metaparticle: {source} threw {exception.GetType().Name}: {exception.Message}; " +
                                            $"the UnhandledException handler then threw: {handlerFailure}");
                }
                catch
                {
                    // Nothing is left to report to; never let this escape into native code.
                }
            }
        }
    }
}
