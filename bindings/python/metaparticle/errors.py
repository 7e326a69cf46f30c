"""Exceptions raised by metaparticle.

Every failure of the C core arrives as an ``MP_E*`` code plus a message that
says what went wrong and what to do about it. Each code maps to one subclass
of :class:`MetaparticleError`; where a built-in exception means the same thing
the subclass also derives from it, so ``except TimeoutError`` or
``except ValueError`` work as a Python programmer expects.

This module must not import ``metaparticle._native``: the native module imports
it to raise these classes.
"""

from __future__ import annotations

from typing import Dict, Type

__all__ = [
    "MetaparticleError",
    "InvalidArgumentError",
    "LockTimeoutError",
    "LockBusyError",
    "SidecarUnreachableError",
    "ProtocolError",
    "LockLostError",
    "LockNotHeldError",
    "InvalidStateError",
    "BackendError",
    "OutOfMemoryError",
    "CanceledError",
    "RegistryError",
    "ContainerEngineError",
    "MP_ERROR",
    "MP_EINVAL",
    "MP_ETIMEOUT",
    "MP_EBUSY",
    "MP_ESIDECAR",
    "MP_EPROTOCOL",
    "MP_ELOST",
    "MP_ENOTHELD",
    "MP_ESTATE",
    "MP_EBACKEND",
    "MP_ENOMEM",
    "MP_ECANCELED",
    "MP_EVERSION",
    "MP_ERANGE",
    "MP_EREGISTRY",
    "MP_EENGINE",
    "MP_ESHUTDOWN",
    "MP_ELIMIT",
]

# The codes of include/metaparticle.h (enum mp_error_code).
MP_ERROR = -1
MP_EINVAL = -2
MP_ETIMEOUT = -3
MP_EBUSY = -4
MP_ESIDECAR = -5
MP_EPROTOCOL = -6
MP_ELOST = -7
MP_ENOTHELD = -8
MP_ESTATE = -9
MP_EBACKEND = -10
MP_ENOMEM = -11
MP_ECANCELED = -12
MP_EVERSION = -13
MP_ERANGE = -14
MP_EREGISTRY = -15
MP_EENGINE = -16
MP_ESHUTDOWN = -17
MP_ELIMIT = -18

_NAMES: Dict[int, str] = {
    value: name for name, value in globals().items() if name.startswith("MP_E") and isinstance(value, int)
}


class MetaparticleError(Exception):
    """Base class of every error metaparticle raises.

    Attributes:
        code: the negative ``MP_E*`` code from the C core (e.g. ``MP_ETIMEOUT``).
        message: the human-readable explanation (also ``str(error)``).
    """

    code: int
    message: str

    def __init__(self, code: int, message: str) -> None:
        # One positional argument for the base: OSError-derived subclasses
        # would otherwise read (code, message) as (errno, strerror).
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The symbolic name of :attr:`code`, e.g. ``"MP_ETIMEOUT"``."""
        return _NAMES.get(self.code, "MP_ERROR")

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code_name}, {self.message!r})"

    def __reduce__(self):  # keep (code, message) through pickling
        return (type(self), (self.code, self.message))


class InvalidArgumentError(MetaparticleError, ValueError):
    """A bad argument: lock name, TTL, timeout, containerize option (``MP_EINVAL``)."""


class LockTimeoutError(MetaparticleError, TimeoutError):
    """The lock was not acquired before the timeout passed (``MP_ETIMEOUT``)."""


class LockBusyError(MetaparticleError):
    """The lock is held by someone else (``MP_EBUSY``)."""


class SidecarUnreachableError(MetaparticleError, ConnectionError):
    """mp-sidecar could not be reached; the message names the address (``MP_ESIDECAR``)."""


class ProtocolError(MetaparticleError):
    """The sidecar answered something unexpected (``MP_EPROTOCOL``)."""


class LockLostError(MetaparticleError):
    """The lock was lost: a renewal was not confirmed in time (``MP_ELOST``)."""


class LockNotHeldError(MetaparticleError, RuntimeError):
    """Releasing a lock this handle does not hold (``MP_ENOTHELD``)."""


class InvalidStateError(MetaparticleError, RuntimeError):
    """A call not valid now: already held, already running, closed (``MP_ESTATE``)."""


class BackendError(MetaparticleError):
    """The sidecar's storage backend failed (``MP_EBACKEND``)."""


class OutOfMemoryError(MetaparticleError, MemoryError):
    """The C core ran out of memory (``MP_ENOMEM``)."""


class CanceledError(MetaparticleError):
    """A blocking call was canceled, e.g. by :meth:`Lock.cancel` (``MP_ECANCELED``)."""


class RegistryError(MetaparticleError):
    """A container registry was unreachable, refused the credentials or failed a push (``MP_EREGISTRY``)."""


class ContainerEngineError(MetaparticleError):
    """The container engine (Docker or Podman API) was unreachable or failed; the message says
    how to start one or set ``DOCKER_HOST`` (``MP_EENGINE``)."""


_CLASSES: Dict[int, Type[MetaparticleError]] = {
    MP_EINVAL: InvalidArgumentError,
    MP_ETIMEOUT: LockTimeoutError,
    MP_EBUSY: LockBusyError,
    MP_ESIDECAR: SidecarUnreachableError,
    MP_EPROTOCOL: ProtocolError,
    MP_ELOST: LockLostError,
    MP_ENOTHELD: LockNotHeldError,
    MP_ESTATE: InvalidStateError,
    MP_EBACKEND: BackendError,
    MP_ENOMEM: OutOfMemoryError,
    MP_ECANCELED: CanceledError,
    MP_EREGISTRY: RegistryError,
    MP_EENGINE: ContainerEngineError,
}


def _from_code(code: int, message: str) -> MetaparticleError:
    """The exception for a C core failure (used by the native module)."""
    return _CLASSES.get(code, MetaparticleError)(code, message)
