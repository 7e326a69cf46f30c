"""The installed package is self-contained and typed."""

from __future__ import annotations

import os
from pathlib import Path

import metaparticle
from metaparticle import _native


def test_versions():
    assert metaparticle.core_version() == _native.HEADER_VERSION
    assert metaparticle.__version__ == _native.HEADER_VERSION


def test_uses_the_bundled_library():
    pkg = Path(metaparticle.__file__).resolve().parent
    bundled = sorted(pkg.glob("libmetaparticle.so.*"))
    assert bundled, f"no libmetaparticle.so.* next to the extension in {pkg}"
    # The library the process actually loaded is the one in the package
    # (found through the extension's RPATH $ORIGIN), not one from elsewhere.
    with open("/proc/self/maps") as maps:
        loaded = {line.split()[-1] for line in maps if "libmetaparticle.so" in line}
    assert {os.path.realpath(p) for p in loaded} == {str(p.resolve()) for p in bundled}, loaded


def test_typed_package():
    pkg = Path(metaparticle.__file__).resolve().parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_native.pyi").exists()


def test_error_hierarchy():
    from metaparticle import errors

    e = errors._from_code(errors.MP_ESIDECAR, "cannot reach mp-sidecar at http://x")
    assert isinstance(e, metaparticle.SidecarUnreachableError)
    assert isinstance(e, metaparticle.MetaparticleError) and isinstance(e, ConnectionError)
    assert str(e) == "cannot reach mp-sidecar at http://x"
    assert e.code == -5 and e.code_name == "MP_ESIDECAR"
    assert _native.error_name(e.code) == e.code_name
    unknown = errors._from_code(-99, "strange")
    assert type(unknown) is metaparticle.MetaparticleError
