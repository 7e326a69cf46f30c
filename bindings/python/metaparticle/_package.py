"""Package: ``containerize()`` for Python programs.

The C core (``mp_containerize``) builds an image from host paths: the command
it runs plus every path in ``include``, each copied to the same absolute path,
with the shared-library closure of every ELF file among them. This module
decides what a Python program needs in there, so that the image runs on a
machine that has nothing but a container engine:

* the interpreter, by its real path (``python3`` is usually a symlink chain);
  the core adds its ELF interpreter and libraries (``libpython`` too);
* its standard library (``lib/pythonX.Y``, with ``lib-dynload``), less what a
  service never imports: the test suites, IDLE, tkinter, turtledemo,
  ensurepip's bundled wheels, the static-library ``config-*`` directory;
* the packages the program imports, found in ``sys.modules`` and by scanning
  the main script's code for imports that have not happened yet (imports
  inside functions), each with its ``*.dist-info`` (``importlib.metadata``);
* the main script's directory (less VCS, caches, virtual environments).

Everything keeps its absolute path, so the interpreter finds its prefix and
standard library from its own location exactly as on the host (no
``PYTHONHOME`` needed). Package directories that are not on the
interpreter's default path (a virtual environment's site-packages, a
``PYTHONPATH`` entry, the user site) are put on ``PYTHONPATH`` in the image.

``__pycache__`` directories are left out: the image's files carry a fixed
timestamp (reproducible builds), which never matches the timestamps recorded
in ``.pyc`` files, so they would be recompiled anyway.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import sys
import sysconfig
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar, Union

from . import _native
from .errors import MP_EINVAL, InvalidArgumentError

__all__ = ["Options", "containerize", "render", "in_container"]

# Python spellings of the seed option names; the seed (camelCase) names work too.
_ALIASES: Dict[str, str] = {
    "shard_spec": "shardSpec",
    "job_spec": "jobSpec",
    "base_image": "baseImage",
    "dry_run": "dryRun",
    "keep_running": "keepRunning",
    "working_dir": "workingDir",
    "image_pull_secrets": "imagePullSecrets",
}
_NESTED_ALIASES: Dict[str, Dict[str, str]] = {"shardSpec": {"url_pattern": "urlPattern"}}

MainFunction = Callable[[], Optional[int]]
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class Options:
    """containerize options with Python names. ``None`` = not set (the core's
    default). A plain ``dict`` with the seed names (``keepRunning``) or these
    names (``keep_running``) works the same.

    Attributes:
        name: image and container name (default: the main script's name).
        repository: image prefix; the image is ``repository/name:tag``.
        tag: image tag (default ``"latest"``).
        ports: TCP ports the program listens on.
        replicas: how many replicas run (default 1).
        runner: ``"docker"`` (default; Docker or Podman) or ``"kubernetes"``
            (also spelled ``"metaparticle"``).
        publish: push the image to ``repository``.
        public: expose the ports beyond this machine.
        shard_spec: ``{"shards": N, "url_pattern": "..."}``.
        job_spec: ``{"count": N}``: run N instances to completion.
        namespace: Kubernetes namespace.
        image_pull_secrets: names of Kubernetes Secrets (of type
            ``kubernetes.io/dockerconfigjson``) the pods pull a private
            image with.
        env: environment variables added to the image.
        files: ``[{"src": host_path, "dest": image_path}]`` or ``(src, dest)``
            pairs, copied into the image.
        base_image: an image from a registry to build on ("registry/repo:tag").
        dry_run: print, instead of acting, YAML for ``kubectl apply -f -``
            (the Kubernetes objects) with the image config in comments.
        keep_running: leave the containers running on Ctrl-C.
        quiet: no progress lines on stderr.
        working_dir: the container's working directory (default ``/``).
        command: what the container runs (default: this interpreter with the
            main script and its arguments).
        include: more host paths copied into the image at the same paths
            (added to what the Python program needs).
    """

    name: Optional[str] = None
    repository: Optional[str] = None
    tag: Optional[str] = None
    ports: Optional[Sequence[int]] = None
    replicas: Optional[int] = None
    runner: Optional[str] = None
    publish: Optional[bool] = None
    public: Optional[bool] = None
    shard_spec: Optional[Mapping[str, Any]] = None
    job_spec: Optional[Mapping[str, Any]] = None
    namespace: Optional[str] = None
    image_pull_secrets: Optional[Sequence[str]] = None
    env: Optional[Mapping[str, str]] = None
    files: Optional[Sequence[Any]] = None
    base_image: Optional[str] = None
    dry_run: Optional[bool] = None
    keep_running: Optional[bool] = None
    quiet: Optional[bool] = None
    working_dir: Optional[str] = None
    command: Optional[Sequence[str]] = None
    include: Optional[Sequence[str]] = None

    def to_dict(self) -> Dict[str, Any]:
        """The options that are set, under their seed names (``keepRunning``)."""
        return _seed_options(self, {})


OptionsLike = Union[Options, Mapping[str, Any], None]


# ---------------------------------------------------------------------------
# Options: Python values -> the core's JSON
# ---------------------------------------------------------------------------


def _plain(value: Any, where: str) -> Any:
    """A JSON-encodable copy of an option value (paths become strings, tuples
    lists). Values of the right JSON type but wrong meaning are left for the
    core to reject, so every binding reports them the same way."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f'containerize option "{where}" has a key of type {type(k).__name__}; keys are strings')
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (set, frozenset)):
        return [_plain(v, f"{where}[]") for v in sorted(value)]
    if isinstance(value, (list, tuple)) or (isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray))):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f'containerize option "{where}" cannot be a {type(value).__name__}')


def _seed_options(options: OptionsLike, kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge `options` and keyword options into one dict with the seed names.
    Unknown names are passed through unchanged: the core rejects them with a
    message naming the option (MP_EINVAL -> InvalidArgumentError)."""
    if options is None:
        items: Iterable[Tuple[str, Any]] = ()
    elif isinstance(options, Options):
        items = ((f.name, getattr(options, f.name)) for f in dataclasses.fields(options))
    elif isinstance(options, Mapping):
        items = options.items()
    else:
        raise TypeError(f"containerize options must be a dict or metaparticle.Options, not {type(options).__name__}")
    seed: Dict[str, Any] = {}
    spelled: Dict[str, str] = {}
    for source in (items, kwargs.items()):
        for key, value in source:
            if not isinstance(key, str):
                raise TypeError(f"containerize option names are strings, not {type(key).__name__}")
            if value is None:  # not set
                continue
            name = _ALIASES.get(key, key)
            if name in seed:
                raise InvalidArgumentError(
                    MP_EINVAL, f'containerize options: "{name}" is given twice (as "{spelled[name]}" and "{key}")'
                )
            spelled[name] = key
            value = _plain(value, name)
            nested = _NESTED_ALIASES.get(name)
            if nested and isinstance(value, dict):
                value = {nested.get(k, k): v for k, v in value.items()}
            if name == "files" and isinstance(value, list):
                # (src, dest) pairs are the natural Python spelling
                value = [
                    {"src": v[0], "dest": v[1]} if isinstance(v, list) and len(v) == 2 else v for v in value
                ]
            seed[name] = value
    return seed


# ---------------------------------------------------------------------------
# What a Python program needs in its image
# ---------------------------------------------------------------------------

# Top-level entries of the standard library that a service never imports.
_STDLIB_PRUNE_TOP = {"idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "dist-packages", "turtle.py"}
# At any depth in the standard library: test suites.
_STDLIB_PRUNE_ANY = {"test", "tests", "idle_test", "__pycache__"}
# In application directories.
_APP_PRUNE = {
    "__pycache__", ".git", ".hg", ".svn", ".tox", ".nox", ".venv", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".eggs", "node_modules",
}
# A shared object: extension modules (.so, .cpython-311-x86_64-linux-gnu.so)
# and bundled libraries (libfoo.so.1.2).
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")


def _tree(root: str, prune: Callable[[os.DirEntry, int], bool]) -> List[str]:
    """Paths that copy `root` without the entries `prune` rejects: `root`
    itself when nothing below it is pruned, else its kept entries.

    A directory that directly holds shared objects is always kept whole: the
    core resolves the libraries of files found inside an included directory
    leniently (a missing one is a warning: an optional extension module may
    never be loaded), but treats each explicitly listed file strictly.
    """

    def walk(path: str, depth: int) -> Tuple[List[str], bool]:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return [path], False  # the core reports it if it matters
        if any(_SHARED_OBJECT.search(e.name) for e in entries):
            return [path], False
        kept: List[str] = []
        pruned = False
        for e in entries:
            if prune(e, depth):
                pruned = True
                continue
            if e.is_dir(follow_symlinks=False):
                sub, sub_pruned = walk(e.path, depth + 1)
                pruned = pruned or sub_pruned
                kept.extend(sub)
            else:
                kept.append(e.path)
        return (kept, True) if pruned else ([path], False)

    return walk(root, 0)[0]


def _prune_stdlib(entry: os.DirEntry, depth: int) -> bool:
    name = entry.name
    if name in _STDLIB_PRUNE_ANY:
        return entry.is_dir(follow_symlinks=False)
    # config-3.11-x86_64-linux-gnu: libpython*.a and build files (tens of MB)
    return depth == 0 and (name in _STDLIB_PRUNE_TOP or name.startswith("config-"))


def _prune_app(entry: os.DirEntry, depth: int) -> bool:
    if not entry.is_dir(follow_symlinks=False):
        return entry.name.endswith((".pyc", ".pyo"))
    if entry.name in _APP_PRUNE:
        return True
    # a virtual environment inside the project: its packages are added one
    # by one below, as the program imports them
    return os.path.exists(os.path.join(entry.path, "pyvenv.cfg"))


def _prune_package(entry: os.DirEntry, depth: int) -> bool:
    if entry.is_dir(follow_symlinks=False):
        return entry.name == "__pycache__"
    return entry.name.endswith((".pyc", ".pyo"))


def _real(path: str) -> str:
    return os.path.realpath(path)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _sanitize_name(raw: str) -> str:
    """Like the core's default name: a DNS label from a file name."""
    out = ""
    for c in raw.lower():
        if ("a" <= c <= "z") or ("0" <= c <= "9"):
            out += c
        elif out and out[-1] != "-":
            out += "-"
    out = out.strip("-") or "app"
    if not ("a" <= out[0] <= "z"):
        out = "app-" + out
    return out[:63].rstrip("-")


@dataclasses.dataclass
class _PythonApp:
    command: List[str]
    name: Optional[str]
    include: List[str]
    pythonpath: List[str]


class _Layout:
    """Where this interpreter keeps things."""

    def __init__(self) -> None:
        paths = sysconfig.get_paths()  # in a virtual environment: the base's stdlib
        self.stdlib: List[str] = []
        for key in ("stdlib", "platstdlib"):
            p = paths.get(key)
            if p and os.path.isdir(p) and _real(p) not in map(_real, self.stdlib):
                self.stdlib.append(p)
        # lib-dynload is inside the stdlib on most systems; a zipped stdlib
        # (python311.zip) is used when it exists.
        self.extra_stdlib = [
            p
            for p in sys.path
            if p
            and (os.path.basename(p) == "lib-dynload" or (p.endswith(".zip") and os.path.isfile(p)))
            and not any(_under(_real(p), _real(s)) for s in self.stdlib)
            and os.path.exists(p)
        ]
        self._stdlib_real = [_real(p) for p in self.stdlib]
        self._stdlib_sites = [
            os.path.join(s, n) for s in self._stdlib_real for n in ("site-packages", "dist-packages")
        ]
        defaults = list(self._stdlib_real) + [_real(p) for p in self.extra_stdlib]
        try:
            import site

            defaults += [_real(p) for p in site.getsitepackages([sys.base_prefix])]
        except (AttributeError, TypeError):  # old virtualenv's site module
            pass
        self.default_path = set(defaults)

    def in_stdlib(self, real_path: str) -> bool:
        """Covered by the standard library include (not one of its site dirs)."""
        if any(_under(real_path, s) for s in self._stdlib_sites):
            return False
        return any(_under(real_path, s) for s in self._stdlib_real) or any(
            _under(real_path, _real(p)) for p in self.extra_stdlib
        )


def _top_of(name: str, file: str, is_package: bool) -> Optional[Tuple[str, str]]:
    """(top-level package dir or module file, the directory holding it) for
    module `name` loaded from `file`."""
    parts = name.split(".")
    p = os.path.abspath(file)
    if is_package:
        p = os.path.dirname(p)  # .../a/b/__init__.py -> .../a/b
    for _ in parts[1:]:
        p = os.path.dirname(p)
    if not os.path.basename(p).split(".")[0] == parts[0]:
        return None  # loaded by some unusual importer: not a file layout we understand
    return p, os.path.dirname(p)


def _archive_of(path: str) -> Optional[str]:
    """For a module inside a zip/egg (zipimport): the archive file."""
    p = path
    while p and p != "/":
        if os.path.isfile(p):
            return p
        p = os.path.dirname(p)
    return None


def _static_imports(script: str, exclude: Set[str]) -> Dict[str, Tuple[Optional[str], bool, List[str]]]:
    """Modules the script's code imports (also inside functions, so imports
    that only happen when main() runs), except `exclude` and the standard
    library. Best effort: code modulefinder cannot follow is skipped."""
    import modulefinder

    stdlib_names = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    finder = modulefinder.ModuleFinder(path=list(sys.path), excludes=sorted(stdlib_names | exclude))
    try:
        finder.run_script(script)
    except Exception:  # noqa: BLE001 - a scan failure must not stop containerize
        pass
    found = {}
    for name, m in finder.modules.items():
        if name == "__main__":
            continue
        found[name] = (m.__file__, m.__path__ is not None, list(m.__path__ or []))
    return found


def _dist_infos(root: str, tops: Set[str]) -> List[str]:
    """The *.dist-info / *.egg-info directories in `root` that belong to the
    packages `tops` (basenames in root), so importlib.metadata works."""
    out = []
    try:
        with os.scandir(root) as it:
            metas = [e.path for e in it if e.name.endswith((".dist-info", ".egg-info")) and e.is_dir()]
    except OSError:
        return out
    modules = {t.split(".")[0] for t in tops}
    for meta in sorted(metas):
        owns = False
        try:
            with open(os.path.join(meta, "top_level.txt"), encoding="utf-8") as f:
                owns = any(line.strip() in modules for line in f)
        except OSError:
            pass
        if not owns:
            try:
                with open(os.path.join(meta, "RECORD"), encoding="utf-8") as f:
                    owns = any(line.split(",", 1)[0].split("/", 1)[0] in tops for line in f)
            except OSError:
                pass
        if owns:
            out.append(meta)
    return out


def _python_app(command_given: bool) -> _PythonApp:
    """What this running Python program needs in its image."""
    exe = sys.executable
    if not exe or not os.path.isfile(exe):
        raise InvalidArgumentError(
            MP_EINVAL,
            "containerize: sys.executable is not set (an embedded interpreter?), so the Python runtime cannot be "
            'found; pass "command" and "include" yourself',
        )
    interpreter = _real(exe)
    layout = _Layout()

    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    main_spec = getattr(main, "__spec__", None)
    command: List[str] = [interpreter]
    name: Optional[str] = None
    include: List[str] = [interpreter]
    app_dirs: List[str] = []
    main_module: Optional[Tuple[str, str]] = None  # (module name, file) when run with -m

    if main_spec is not None and main_spec.name != "__main__" and main_file:
        # python -m pkg.mod: the module's package is found like any import;
        # in the container it is run the same way.
        module = main_spec.name[: -len(".__main__")] if main_spec.name.endswith(".__main__") else main_spec.name
        command += ["-m", module]
        name = _sanitize_name(module.rsplit(".", 1)[-1])
        main_module = (main_spec.name, main_file)
    elif main_file or (main_spec is not None and sys.argv and sys.argv[0]):
        # python script.py, or python dir_or_zip (whose __main__.py runs)
        target = os.path.abspath(sys.argv[0] if main_spec is not None else main_file)
        command.append(target)
        base = os.path.basename(target.rstrip("/"))
        name = _sanitize_name(base[:-3] if base.endswith(".py") else base)
        # The script's directory is sys.path[0] in the container as here.
        app_dirs.append(target if os.path.isdir(target) or main_spec is not None else os.path.dirname(target))
    elif not command_given:
        raise InvalidArgumentError(
            MP_EINVAL,
            "containerize: this program has no main script (python -c, or an interactive session), so there is "
            'nothing to run in the container; run it from a file, or pass "command"',
        )
    command += sys.argv[1:]

    for d in layout.stdlib:
        include += _tree(d, _prune_stdlib)
    include += layout.extra_stdlib
    for d in app_dirs:
        include += _tree(d, _prune_app) if os.path.isdir(d) else [d]

    # --- imported packages: top-level dir or module file -> the dir holding it
    tops: Dict[str, str] = {}
    archives: Dict[str, str] = {}

    def add(mod_name: str, file: Optional[str], is_package: bool, locations: Sequence[str]) -> None:
        if file:
            if not os.path.exists(file):  # imported from a zip or egg
                archive = _archive_of(file)
                if archive and not layout.in_stdlib(_real(archive)):
                    archives.setdefault(archive, archive)
                return
            found = [_top_of(mod_name, file, is_package)]
        else:  # a namespace package: one directory per portion
            found = [_top_of(mod_name, os.path.join(loc, "__init__.py"), True) for loc in locations if os.path.isdir(loc)]
        for f in found:
            if f and not layout.in_stdlib(_real(f[0])):
                tops.setdefault(f[0], f[1])

    for mod_name, mod in list(sys.modules.items()):
        if mod_name == "__main__" or mod is None:
            continue
        file = getattr(mod, "__file__", None)
        path = getattr(mod, "__path__", None)
        if not file and path is None:
            continue  # built-in or frozen
        try:
            locations = list(path) if path is not None else []
        except TypeError:
            locations = []
        add(mod_name, file, path is not None and bool(file) and os.path.basename(file).startswith("__init__."), locations)
    if main_module:
        add(main_module[0], main_module[1], os.path.basename(main_module[1]).startswith("__init__."), [])

    scan_target = main_module[1] if main_module else (command[1] if len(command) > 1 and os.path.isfile(command[1]) else None)
    if scan_target:
        known = {n.split(".")[0] for n in sys.modules}
        for mod_name, (file, is_pkg, locations) in _static_imports(scan_target, known).items():
            add(mod_name, file, is_pkg, locations)

    by_root: Dict[str, Set[str]] = {}
    for top, root in tops.items():
        by_root.setdefault(root, set()).add(os.path.basename(top))
        include += _tree(top, _prune_package) if os.path.isdir(top) and not os.path.islink(top) else [top]
    for root, names in sorted(by_root.items()):
        include += _dist_infos(root, names)
    include += sorted(archives)

    # --- PYTHONPATH: the roots the interpreter would not search by itself,
    # in the order of this process's sys.path.
    app_real = {_real(d) for d in app_dirs}
    extra = [r for r in list(by_root) + sorted(archives) if _real(r) not in layout.default_path and _real(r) not in app_real]
    order = {}
    for i, p in enumerate(sys.path):
        order.setdefault(_real(os.path.abspath(p or ".")), i)
    extra.sort(key=lambda r: (order.get(_real(r), len(order)), r))
    seen: Set[str] = set()
    pythonpath = [r for r in extra if not (r in seen or seen.add(r))]

    deduped: List[str] = []
    seen_inc: Set[str] = set()
    for p in include:
        if p not in seen_inc:
            seen_inc.add(p)
            deduped.append(p)
    return _PythonApp(command=command, name=name, include=deduped, pythonpath=pythonpath)


def _core_options(options: OptionsLike, kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """The complete options for the core: the user's, plus what this Python
    program needs in its image (the user's values win; "include" adds)."""
    seed = _seed_options(options, kwargs)
    app = _python_app(command_given="command" in seed)
    out = dict(seed)
    out.setdefault("command", app.command)
    if app.name and "name" not in seed:
        out["name"] = app.name
    user_include = seed.get("include")
    out["include"] = app.include + (user_include if isinstance(user_include, list) else [])
    if user_include is not None and not isinstance(user_include, list):
        out["include"] = user_include  # let the core say what is wrong with it
    env = seed.get("env")
    if env is None or isinstance(env, dict):
        env = dict(env or {})
        if app.pythonpath:
            env.setdefault("PYTHONPATH", os.pathsep.join(app.pythonpath))
        # Container logs are a pipe: without this, print() output would sit
        # in Python's block buffer instead of reaching the terminal.
        env.setdefault("PYTHONUNBUFFERED", "1")
        out["env"] = env
    return out


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def in_container() -> bool:
    """True inside a container built by containerize: the image sets
    ``METAPARTICLE_IN_CONTAINER=true`` (``false`` or ``0`` force "outside")."""
    return _native.in_container()


def _exit_code(result: Any) -> int:
    if result is None:
        return 0
    if isinstance(result, bool):
        return int(result)
    if isinstance(result, int):
        if not -(2**31) <= result < 2**31:
            raise ValueError(f"main() returned {result}, which is not a valid exit code")
        return result
    raise TypeError(f"main() must return an int (the exit code) or None, not {type(result).__name__}")


def _terminate_on_sigterm() -> None:
    """As PID 1 of a container the kernel ignores signals left at their default
    action, so `docker stop` would wait out its grace period and kill. Give
    SIGTERM the meaning it has everywhere else: end the program (raising
    SystemExit, so ``finally`` blocks and ``with`` exits run)."""
    if os.getpid() != 1 or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # the program handles it itself

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def _flush_std() -> None:
    # The core writes to the C streams: keep earlier Python output first.
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _run(seed: Dict[str, Any], main: MainFunction) -> int:
    def call_main() -> int:
        _terminate_on_sigterm()
        return _exit_code(main())

    if _native.in_container():
        # Inside: only the user's options, for validation; finding the
        # Python runtime would be wasted work (and slower start-up).
        return _native.containerize(json.dumps(seed), call_main)
    text = json.dumps(_core_options(seed, {}))
    _flush_std()
    return _native.containerize(text, call_main)


def containerize(options: Union[OptionsLike, Callable[..., Any]] = None, main: Optional[MainFunction] = None, /, **kwargs: Any) -> Any:
    """Package this program as a container image and run it.

    Inside the container (``METAPARTICLE_IN_CONTAINER=true``, set by the
    image), run ``main()`` and return its exit code (``None`` = 0).
    Exceptions from ``main`` propagate.

    Outside, build an image of this program (interpreter, standard library,
    imported packages, the script's directory; no Dockerfile, no daemon),
    push it when ``publish``, run it with the runner (``replicas`` copies),
    and stream the replicas' output, each line prefixed ``[name-i]``, until
    Ctrl-C or SIGTERM; then stop and remove the containers and return 0. A
    job (``job_spec``) returns when its instances finish, with the first
    non-zero exit code among them. The GIL is released meanwhile. A second
    Ctrl-C during the teardown ends the process at once.

    Three forms::

        sys.exit(containerize({"ports": [8080], "replicas": 2}, main))

        @containerize(ports=[8080], replicas=2)   # or containerize(Options(...))
        def main(): ...
        sys.exit(main())                          # containerizes when called

        @containerize                             # all defaults
        def main(): ...

    Options: a dict (seed names like ``keepRunning`` or Python names like
    ``keep_running``), an :class:`Options`, and/or keyword arguments. Unknown
    or invalid options raise :class:`InvalidArgumentError` naming the option.

    Raises:
        InvalidArgumentError: bad options, or files that do not exist.
        RegistryError: the registry was unreachable or refused the push.
        ContainerEngineError: Docker/Podman unreachable or failing (the
            message says how to start one or set ``DOCKER_HOST``).
        MetaparticleError: anything else the core reports (``MP_ERROR``: a
            library the program needs cannot be found).
    """
    if "main" in kwargs and callable(kwargs["main"]):
        raise TypeError("containerize(options, main): pass main as the second positional argument")
    if main is None:
        if callable(options) and not isinstance(options, (Mapping, Options)):
            if kwargs:
                raise TypeError("containerize(function, **options): give the options first, or use @containerize(**options)")
            return _decorate(options, {})  # bare @containerize
        seed = _seed_options(options, kwargs)  # type: ignore[arg-type]

        def decorator(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"@containerize(...) decorates a function, not {type(fn).__name__}")
            return _decorate(fn, seed)

        return decorator
    if not callable(main):
        raise TypeError(f"containerize(options, main): main must be callable, not {type(main).__name__}")
    return _run(_seed_options(options, kwargs), main)  # type: ignore[arg-type]


def _decorate(fn: F, seed: Dict[str, Any]) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> int:
        return _run(seed, lambda: fn(*args, **kw))

    return wrapper  # type: ignore[return-value]


def render(options: OptionsLike = None, /, **kwargs: Any) -> Dict[str, Any]:
    """What :func:`containerize` would build and create for this program,
    without side effects (host files are read; nothing is written, pushed or
    run): ``{"image": {"reference", "digest", "config", "manifest"},
    "docker": [{"name", "body"}...], "kubernetes": [objects...],
    "warnings": [...]}``. For unit-testing infrastructure ("code as
    config"). Takes the same options as :func:`containerize`."""
    text = json.dumps(_core_options(options, kwargs))
    return json.loads(_native.containerize_render(text))
