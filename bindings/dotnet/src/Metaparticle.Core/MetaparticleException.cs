using System;

namespace Metaparticle
{
    /// <summary>
    /// A failure reported by the Metaparticle native library. <see cref="Code"/>
    /// says what kind of failure it was; <see cref="Exception.Message"/> is the
    /// library's own explanation (<c>mp_error_last()</c>), which says what went
    /// wrong and what to do about it.
    /// </summary>
    public class MetaparticleException : Exception
    {
        /// <summary>Creates an exception for <paramref name="code"/>.</summary>
        public MetaparticleException(ErrorCode code, string message)
            : base(message)
        {
            Code = code;
        }

        /// <summary>Creates an exception for <paramref name="code"/> with an inner exception.</summary>
        public MetaparticleException(ErrorCode code, string message, Exception? innerException)
            : base(message, innerException)
        {
            Code = code;
        }

        /// <summary>The native error code (<c>MP_E*</c>).</summary>
        public ErrorCode Code { get; }

        /// <summary>
        /// The exception type for a native error: the specific subclasses for
        /// codes that callers commonly handle on their own, else this class.
        /// </summary>
        internal static MetaparticleException Create(ErrorCode code, string message) => code switch
        {
            ErrorCode.SidecarUnreachable => new SidecarUnreachableException(message),
            ErrorCode.Timeout => new MetaparticleTimeoutException(message),
            _ => new MetaparticleException(code, message),
        };
    }

    /// <summary>
    /// The sidecar (<c>mp-sidecar</c>) could not be reached
    /// (<see cref="ErrorCode.SidecarUnreachable"/>). The message names the
    /// address that was tried; check that the sidecar runs there, or set
    /// <c>METAPARTICLE_SIDECAR</c> / the sidecar URL option.
    /// </summary>
    public class SidecarUnreachableException : MetaparticleException
    {
        /// <summary>Creates the exception.</summary>
        public SidecarUnreachableException(string message)
            : base(ErrorCode.SidecarUnreachable, message)
        {
        }
    }

    /// <summary>An operation's timeout passed (<see cref="ErrorCode.Timeout"/>).</summary>
    public class MetaparticleTimeoutException : MetaparticleException
    {
        /// <summary>Creates the exception.</summary>
        public MetaparticleTimeoutException(string message)
            : base(ErrorCode.Timeout, message)
        {
        }
    }
}
