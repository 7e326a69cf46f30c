"""Metaparticle: a cloud-native standard library.

Sync primitives backed by mp-sidecar::

    import metaparticle

    with metaparticle.Lock("test"):
        ...  # only one process in the cluster runs this at a time

    metaparticle.Election("test", on_leader=lambda: print("leading")).run()

Package: the program builds a container image of itself and runs replicas::

    @metaparticle.containerize(ports=[8080], replicas=2)
    def main():
        ...  # runs in each replica

    sys.exit(main())

This package is a thin binding of libmetaparticle's C ABI (bundled as
``libmetaparticle.so.0`` next to the native module).
"""

from ._sync import Election, Lock
from ._package import Options, containerize, in_container, render
from . import _native, errors
from .errors import (
    BackendError,
    CanceledError,
    ContainerEngineError,
    InvalidArgumentError,
    InvalidStateError,
    LockBusyError,
    LockLostError,
    LockNotHeldError,
    LockTimeoutError,
    MetaparticleError,
    OutOfMemoryError,
    ProtocolError,
    RegistryError,
    SidecarUnreachableError,
)

__version__ = "0.1.0"

__all__ = [
    "Lock",
    "Election",
    "containerize",
    "render",
    "in_container",
    "Options",
    "core_version",
    # the exception classes (not the MP_* codes, which stay in metaparticle.errors)
    *(name for name in errors.__all__ if not name.startswith("MP_")),
]


def core_version() -> str:
    """The version of the loaded libmetaparticle, e.g. ``"0.1.0"``."""
    return _native.version()
