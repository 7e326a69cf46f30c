"""In-tree PEP 517 build backend for the metaparticle Python package.

Why not setuptools: `pip install ./bindings/python` must work offline, and
pip's build isolation would have to download setuptools and wheel. This
backend needs only the standard library, so `requires = []` in pyproject.toml
and pip has nothing to fetch.

What a build does:
  1. Find libmetaparticle: $METAPARTICLE_LIBRARY (a built libmetaparticle.so*,
     e.g. from the project's CMake build tree), else configure and build the
     `metaparticle` target of the repository this directory lives in, with
     CMake (scripts/build-core.cmake), in $METAPARTICLE_BUILD_DIR (default:
     <repo>/build-core, the build the Node and .NET installs share).
  2. Compile src/native.cpp (pybind11) into metaparticle/_native<EXT_SUFFIX>,
     linked against that library with RPATH $ORIGIN.
  3. Write a wheel: the Python package, the extension and the library copied
     next to it as libmetaparticle.so.<major> (its SONAME), so an installed
     package needs nothing from the repository.

Environment variables:
  METAPARTICLE_LIBRARY      use this libmetaparticle.so* instead of building one
  METAPARTICLE_INCLUDE_DIR  directory of metaparticle.h (default: <repo>/include)
  METAPARTICLE_WORK_DIR     where builds are kept (default: bindings/python/build)
  METAPARTICLE_BUILD_DIR    CMake build directory for the core (default: <repo>/build-core)
  PYBIND11_INCLUDE_DIR      pybind11 headers (default: the pybind11 module, else /usr/include)
  CXX, CMAKE, CMAKE_BUILD_PARALLEL_LEVEL   the usual meanings
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent.parent  # bindings/python
PACKAGE = "metaparticle"
SOURCE = HERE / "src" / "native.cpp"
PY_FILES = ["__init__.py", "_sync.py", "_package.py", "errors.py", "py.typed", "_native.pyi"]


class BuildError(Exception):
    """A build step failed; the message says which and what to do."""


# ---------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------


def _project() -> Dict[str, str]:
    """name, version, description, requires-python from pyproject.toml [project]."""
    text = (HERE / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.S | re.M)
    if not section:
        raise BuildError("pyproject.toml has no [project] table")
    fields = dict(re.findall(r'^([A-Za-z-]+)\s*=\s*"([^"]*)"\s*$', section.group(1), re.M))
    for key in ("name", "version", "description", "requires-python"):
        if key not in fields:
            raise BuildError(f"pyproject.toml [project] lacks {key}")
    init = (HERE / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"', init, re.M)
    if not m or m.group(1) != fields["version"]:
        raise BuildError(
            f"{PACKAGE}/__init__.py __version__ ({m.group(1) if m else 'missing'}) differs from "
            f"pyproject.toml version ({fields['version']}); keep them equal"
        )
    return fields


def _dist_info_name(meta: Dict[str, str]) -> str:
    return f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"


def _metadata_text(meta: Dict[str, str]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {meta['name']}",
        f"Version: {meta['version']}",
        f"Summary: {meta['description']}",
        f"Requires-Python: {meta['requires-python']}",
        "Classifier: Programming Language :: Python :: 3",
        "Classifier: Programming Language :: C++",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Typing :: Typed",
    ]
    readme = HERE / "README.md"
    if readme.exists():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def _wheel_tag() -> str:
    if sys.implementation.name != "cpython":
        raise BuildError(f"only CPython is supported, not {sys.implementation.name}")
    py = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    abi = py + getattr(sys, "abiflags", "")
    plat = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{py}-{abi}-{plat}"


def _wheel_text(tag: str) -> str:
    return f"Wheel-Version: 1.0\nGenerator: metaparticle_build\nRoot-Is-Purelib: false\nTag: {tag}\n"


# ---------------------------------------------------------------------------
# Native parts
# ---------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"metaparticle_build: {msg}", file=sys.stderr, flush=True)


def _run(cmd: List[str], what: str, cwd: Optional[Path] = None) -> None:
    _log(f"{what}: {' '.join(shlex.quote(c) for c in cmd)}")
    try:
        # Output goes to stderr: pip shows it with -v, and always on failure.
        proc = subprocess.run(cmd, cwd=cwd, stdout=sys.stderr, stderr=sys.stderr)
    except FileNotFoundError:
        raise BuildError(f"{what}: '{cmd[0]}' was not found; install it or set the matching variable") from None
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit status {proc.returncode}); see the output above")


def _repo_root() -> Optional[Path]:
    root = HERE.parent.parent
    if (root / "include" / "metaparticle.h").is_file() and (root / "libmetaparticle").is_dir():
        return root
    return None


def _work_dir() -> Path:
    """Where build products are kept between builds (so a reinstall is quick)."""
    return Path(os.environ.get("METAPARTICLE_WORK_DIR") or HERE / "build").resolve()


def _include_dir() -> Path:
    env = os.environ.get("METAPARTICLE_INCLUDE_DIR")
    if env:
        d = Path(env)
    else:
        root = _repo_root()
        if root is None:
            raise BuildError(
                f"metaparticle.h not found: {HERE} is not inside the metaparticle repository. "
                "Set METAPARTICLE_INCLUDE_DIR (and METAPARTICLE_LIBRARY) or build from the repository."
            )
        d = root / "include"
    if not (d / "metaparticle.h").is_file():
        raise BuildError(f"{d}/metaparticle.h does not exist (METAPARTICLE_INCLUDE_DIR)")
    return d


def _core_library() -> Path:
    """A built libmetaparticle (the real file, symlinks resolved)."""
    env = os.environ.get("METAPARTICLE_LIBRARY")
    if env:
        lib = Path(env).resolve()
        if not lib.is_file():
            raise BuildError(f"METAPARTICLE_LIBRARY={env} does not exist")
        return lib
    root = _repo_root()
    if root is None:
        raise BuildError(
            f"cannot build libmetaparticle: {HERE} is not inside the metaparticle repository "
            "(pip copied it elsewhere?). Set METAPARTICLE_LIBRARY to a built libmetaparticle.so "
            "and METAPARTICLE_INCLUDE_DIR to the directory of metaparticle.h."
        )
    # One build of the core per clone, shared with the Node and .NET installs
    # (scripts/build-core.cmake locks it, so concurrent installs take turns).
    build = Path(os.environ.get("METAPARTICLE_BUILD_DIR") or root / "build-core").resolve()
    cmake = os.environ.get("CMAKE", "cmake")
    _run(
        [
            cmake, f"-DSOURCE_DIR={root}", f"-DBUILD_DIR={build}", "-DTARGETS=metaparticle",
            "-P", str(root / "scripts" / "build-core.cmake"),
        ],
        "building libmetaparticle",
    )
    # The development symlink names the real file (libmetaparticle.so.X.Y.Z);
    # a glob would also match its split debug information (.so.X.Y.Z.debug).
    link = build / "libmetaparticle" / "libmetaparticle.so"
    if not link.exists():
        raise BuildError(f"the CMake build did not produce {link}")
    return link.resolve()


def _soname(lib: Path) -> str:
    """The library's SONAME (what the extension's DT_NEEDED will say)."""
    try:
        out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
        m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
        if m:
            return m.group(1)
    except FileNotFoundError:
        pass
    m = re.match(r"(libmetaparticle\.so\.\d+)", lib.name)  # libmetaparticle.so.0.1.0 -> .so.0
    if not m:
        raise BuildError(f"cannot tell the SONAME of {lib}; install binutils (readelf)")
    return m.group(1)


def _pybind11_include() -> Path:
    candidates = []
    if os.environ.get("PYBIND11_INCLUDE_DIR"):
        candidates.append(Path(os.environ["PYBIND11_INCLUDE_DIR"]))
    try:
        import pybind11  # type: ignore

        candidates.append(Path(pybind11.get_include()))
    except ImportError:
        pass
    candidates += [Path("/usr/include"), Path("/usr/local/include")]
    for c in candidates:
        if (c / "pybind11" / "pybind11.h").is_file():
            return c
    raise BuildError("pybind11 headers not found: install pybind11-dev (or pip's pybind11), or set PYBIND11_INCLUDE_DIR")


def _compile_extension(lib: Path, out_dir: Path, cache_dir: Path) -> Path:
    """Compile src/native.cpp into out_dir/_native<EXT_SUFFIX>, reusing a cached
    build when nothing that goes into it changed."""
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    py_include = Path(sysconfig.get_paths()["include"])
    if not (py_include / "Python.h").is_file():
        raise BuildError(f"Python.h not found in {py_include}: install the Python development headers (python3-dev)")
    cxx = shlex.split(os.environ.get("CXX") or "c++")
    mp_include = _include_dir()
    cmd = cxx + [
        "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra",
        "-I", str(mp_include), "-I", str(_pybind11_include()), "-I", str(py_include),
        str(SOURCE), str(lib),
        # The library is bundled next to the extension.
        "-Wl,-rpath,$ORIGIN",
        "-o",
    ]
    key = hashlib.sha256()
    for part in cmd:
        key.update(part.encode() + b"\0")
    key.update(SOURCE.read_bytes())
    key.update((mp_include / "metaparticle.h").read_bytes())
    key.update(_soname(lib).encode())
    cached = cache_dir / f"{key.hexdigest()[:16]}" / f"_native{ext_suffix}"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".tmp")
        _run(cmd + [str(tmp)], "compiling metaparticle._native")
        os.replace(tmp, cached)
    else:
        _log(f"reusing {cached}")
    out = out_dir / cached.name
    shutil.copyfile(cached, out)
    return out


def _native_files(work: Path) -> List[Tuple[str, Path]]:
    """(archive name, file) for the extension and the bundled library."""
    lib = _core_library()
    soname = _soname(lib)
    ext = _compile_extension(lib, work, _work_dir() / "ext")
    bundled = work / soname
    # The core may come from a RelWithDebInfo build: ship it without the
    # debug sections (a tenth of the size); a plain copy if strip is missing.
    try:
        stripped = subprocess.run(["strip", "--strip-debug", "-o", str(bundled), str(lib)]).returncode == 0
    except FileNotFoundError:
        stripped = False
    if not stripped:
        shutil.copyfile(lib, bundled)
    return [(f"{PACKAGE}/{ext.name}", ext), (f"{PACKAGE}/{soname}", bundled)]


# ---------------------------------------------------------------------------
# Wheel writing
# ---------------------------------------------------------------------------


def _zip_time() -> Tuple[int, int, int, int, int, int]:
    import time

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # reproducible: 1980-01-01
    return time.gmtime(max(epoch, 315532800))[:6]


def _write_wheel(
    wheel_directory: str, meta: Dict[str, str], files: List[Tuple[str, bytes, bool]], tag: str
) -> str:
    """files: (archive name, content, executable)."""
    dist_info = _dist_info_name(meta)
    name = f"{meta['name'].replace('-', '_')}-{meta['version']}-{tag}.whl"
    files = files + [
        (f"{dist_info}/METADATA", _metadata_text(meta).encode(), False),
        (f"{dist_info}/WHEEL", _wheel_text(tag).encode(), False),
        (f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode(), False),
    ]
    record = io.StringIO()
    for arcname, data, _ in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{arcname},sha256={digest},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    files.append((f"{dist_info}/RECORD", record.getvalue().encode(), False))

    os.makedirs(wheel_directory, exist_ok=True)
    path = os.path.join(wheel_directory, name)
    stamp = _zip_time()
    with zipfile.ZipFile(path + ".tmp", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, data, executable in files:
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(path + ".tmp", path)
    return name


def _python_files() -> List[Tuple[str, bytes, bool]]:
    return [(f"{PACKAGE}/{f}", (HERE / PACKAGE / f).read_bytes(), False) for f in PY_FILES]


def _guard(fn):
    """Report a BuildError as a one-line message instead of a backend traceback."""

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BuildError as e:
            print(f"\nerror: {e}\n", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# ---------------------------------------------------------------------------
# PEP 517 / PEP 660 hooks
# ---------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def _prepare_metadata(metadata_directory: str) -> str:
    meta = _project()
    d = Path(metadata_directory) / _dist_info_name(meta)
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(_metadata_text(meta), encoding="utf-8")
    (d / "WHEEL").write_text(_wheel_text(_wheel_tag()), encoding="utf-8")
    (d / "top_level.txt").write_text(f"{PACKAGE}\n", encoding="utf-8")
    return d.name


@_guard
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


@_guard
def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


@_guard
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    meta = _project()
    with tempfile.TemporaryDirectory(prefix="metaparticle-wheel-") as work:
        native = [(arc, p.read_bytes(), True) for arc, p in _native_files(Path(work))]
    name = _write_wheel(wheel_directory, meta, _python_files() + native, _wheel_tag())
    _log(f"wrote {name}")
    return name


@_guard
def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """Editable install: the native parts are built into the source package
    directory and a .pth file puts bindings/python on sys.path."""
    meta = _project()
    pkg = HERE / PACKAGE
    for stale in list(pkg.glob("_native*.so")) + list(pkg.glob("libmetaparticle.so*")):
        stale.unlink()
    with tempfile.TemporaryDirectory(prefix="metaparticle-editable-") as work:
        for arc, p in _native_files(Path(work)):
            shutil.copyfile(p, pkg / Path(arc).name)
    pth = (f"_{PACKAGE}_editable.pth", (str(HERE) + "\n").encode(), False)
    name = _write_wheel(wheel_directory, meta, [pth], _wheel_tag())
    _log(f"wrote {name} (editable: {HERE})")
    return name
