"""Metaparticle: a cloud-native standard library.

Sync primitives backed by mp-sidecar::

    import metaparticle

    with metaparticle.Lock("test"):
        ...  # only one process in the cluster runs this at a time

    metaparticle.Election("test", on_leader=lambda: print("leading")).run()

This package is a thin binding of libmetaparticle's C ABI (bundled as
``libmetaparticle.so.0`` next to the native module).
"""

from ._sync import Election, Lock
from . import _native
from .errors import (
    BackendError,
    CanceledError,
    InvalidArgumentError,
    InvalidStateError,
    LockBusyError,
    LockLostError,
    LockNotHeldError,
    LockTimeoutError,
    MetaparticleError,
    OutOfMemoryError,
    ProtocolError,
    SidecarUnreachableError,
)

__version__ = "0.1.0"

__all__ = [
    "Lock",
    "Election",
    "core_version",
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
]


def core_version() -> str:
    """The version of the loaded libmetaparticle, e.g. ``"0.1.0"``."""
    return _native.version()
