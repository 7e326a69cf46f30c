namespace Metaparticle
{
    /// <summary>
    /// The error codes of the native library (<c>mp_error_code</c> in
    /// <c>metaparticle.h</c>), with the same numeric values.
    /// </summary>
    public enum ErrorCode
    {
        /// <summary><c>MP_OK</c>: success.</summary>
        Ok = 0,
        /// <summary><c>MP_ERROR</c>: unspecified failure; see the message.</summary>
        Error = -1,
        /// <summary><c>MP_EINVAL</c>: invalid argument (bad lock name, bad option).</summary>
        InvalidArgument = -2,
        /// <summary><c>MP_ETIMEOUT</c>: the operation's timeout passed.</summary>
        Timeout = -3,
        /// <summary><c>MP_EBUSY</c>: the lock is held by someone else.</summary>
        Busy = -4,
        /// <summary><c>MP_ESIDECAR</c>: the sidecar could not be reached.</summary>
        SidecarUnreachable = -5,
        /// <summary><c>MP_EPROTOCOL</c>: the sidecar answered something unexpected.</summary>
        Protocol = -6,
        /// <summary><c>MP_ELOST</c>: the lock was lost.</summary>
        Lost = -7,
        /// <summary><c>MP_ENOTHELD</c>: the lock is not held by this handle.</summary>
        NotHeld = -8,
        /// <summary><c>MP_ESTATE</c>: call not valid in the object's current state.</summary>
        InvalidState = -9,
        /// <summary><c>MP_EBACKEND</c>: the sidecar's storage backend failed.</summary>
        Backend = -10,
        /// <summary><c>MP_ENOMEM</c>: out of memory.</summary>
        OutOfMemory = -11,
        /// <summary><c>MP_ECANCELED</c>: a blocking call was canceled.</summary>
        Canceled = -12,
        /// <summary><c>MP_EVERSION</c>: options struct version not supported.</summary>
        Version = -13,
        /// <summary><c>MP_ERANGE</c>: an output did not fit.</summary>
        Range = -14,
        /// <summary><c>MP_EREGISTRY</c>: a container registry was unreachable, refused credentials or failed.</summary>
        Registry = -15,
        /// <summary><c>MP_EENGINE</c>: the container engine (Docker/Podman API) was unreachable or failed.</summary>
        Engine = -16,
        /// <summary><c>MP_ESHUTDOWN</c>: mp-sidecar is shutting down; retry against its replacement.</summary>
        ShuttingDown = -17,
        /// <summary><c>MP_ELIMIT</c>: a limit of mp-sidecar was reached (connections, lock names); retry later.</summary>
        Limit = -18,
    }
}
