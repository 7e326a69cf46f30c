using System;
using System.Runtime.InteropServices;

namespace Metaparticle.Sync
{
    /// <summary>Options for a <see cref="Lock"/>. Read once, when the lock is created.</summary>
    public sealed class LockOptions
    {
        /// <summary>
        /// Base URL of the sidecar, e.g. <c>http://127.0.0.1:13131</c>.
        /// Null: the <c>METAPARTICLE_SIDECAR</c> environment variable, else
        /// <c>http://127.0.0.1:13131</c>.
        /// </summary>
        public string? SidecarUrl { get; set; }

        /// <summary>
        /// The holder identity recorded in the lock. Null: <c>&lt;host name&gt;/&lt;pid&gt;</c>,
        /// so that two processes in one pod are different holders.
        /// </summary>
        public string? Owner { get; set; }

        /// <summary>
        /// How long the lock outlives this process if it stops renewing (a
        /// whole number of seconds, 3 to 3600). Null: 15 seconds. The lock is
        /// renewed every third of it.
        /// </summary>
        public TimeSpan? Ttl { get; set; }

        /// <summary>
        /// Called, on a library thread, each time a held lock is lost (a
        /// renewal could not be confirmed in time, or someone else holds it).
        /// Null: the process prints why and exits with status 1, because code
        /// that believes it holds a lock must not keep running once it does not.
        /// Keep the handler short (the lock's next callback waits for it) and do
        /// not wait for the lock inside it; Release, IsHeld and Dispose are fine.
        /// </summary>
        public Action? OnLost { get; set; }
    }

    /// <summary>Options for an <see cref="Election"/>. Read once, when the election is created.</summary>
    public sealed class ElectionOptions
    {
        /// <summary>Base URL of the sidecar; null: <c>METAPARTICLE_SIDECAR</c>, else <c>http://127.0.0.1:13131</c>.</summary>
        public string? SidecarUrl { get; set; }

        /// <summary>This candidate's identity. Null: <c>&lt;host name&gt;/&lt;pid&gt;</c>.</summary>
        public string? Identity { get; set; }

        /// <summary>Leadership TTL (whole seconds, 3 to 3600). Null: 15 seconds.</summary>
        public TimeSpan? Ttl { get; set; }
    }

    /// <summary>Conversions from option values to the native option structs.</summary>
    internal static class OptionConversion
    {
        /// <summary>TTL in whole seconds; 0 for the library default. The library checks the range.</summary>
        internal static uint TtlSeconds(TimeSpan? ttl, string paramName)
        {
            if (ttl is null)
            {
                return 0;
            }
            TimeSpan value = ttl.Value;
            if (value <= TimeSpan.Zero || value.Ticks % TimeSpan.TicksPerSecond != 0 || value.TotalSeconds > uint.MaxValue)
            {
                throw new ArgumentOutOfRangeException(paramName, value,
                    "Ttl must be a positive whole number of seconds (the library accepts 3 to 3600), or null for the default of 15 seconds.");
            }
            return (uint)value.TotalSeconds;
        }

        /// <summary>Timeout in milliseconds for the C ABI: -1 waits forever.</summary>
        internal static int TimeoutMilliseconds(TimeSpan? timeout, string paramName)
        {
            if (timeout is null || timeout.Value == System.Threading.Timeout.InfiniteTimeSpan)
            {
                return -1;
            }
            double ms = timeout.Value.TotalMilliseconds;
            if (ms < 0 || ms > int.MaxValue)
            {
                throw new ArgumentOutOfRangeException(paramName, timeout.Value,
                    "The timeout must be between zero and int.MaxValue milliseconds, or Timeout.InfiniteTimeSpan.");
            }
            return (int)Math.Ceiling(ms);
        }

        /// <summary>A NUL-terminated UTF-8 copy in unmanaged memory (IntPtr.Zero for null); free with <see cref="Free"/>.</summary>
        internal static IntPtr Utf8(string? value) => value is null ? IntPtr.Zero : Marshal.StringToCoTaskMemUTF8(value);

        internal static void Free(IntPtr utf8)
        {
            if (utf8 != IntPtr.Zero)
            {
                Marshal.FreeCoTaskMem(utf8);
            }
        }
    }
}
