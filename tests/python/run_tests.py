#!/usr/bin/env python3
"""Build the metaparticle wheel, install it into a scratch directory, and run
the Python binding tests against it with pytest.

The wheel is built by the package's own PEP 517 backend (what `pip install
./bindings/python` runs), so the tests exercise the installed layout: the
native module loading the bundled libmetaparticle through RPATH $ORIGIN, with
no path into the source tree. pip itself is not needed.

Environment:
  MP_SIDECAR_BIN        mp-sidecar to test against (required)
  METAPARTICLE_LIBRARY  libmetaparticle to bundle (ctest passes the build
                        tree's); without it the backend builds the core itself
  MP_TEST_PRELOAD       LD_PRELOAD for the test processes only (the ASan
                        runtime, for a sanitizer build of the library)
Usage: run_tests.py WORK_DIR [pytest args...]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent.parent / "bindings" / "python"


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    work = Path(sys.argv[1]).resolve()
    try:
        import pytest  # noqa: F401
    except ImportError:
        print(f"error: {sys.executable} has no pytest (Debian: apt-get install python3-pytest)", file=sys.stderr)
        return 1
    if not os.environ.get("MP_SIDECAR_BIN"):
        print("error: set MP_SIDECAR_BIN to the mp-sidecar executable", file=sys.stderr)
        return 1

    wheels = work / "wheels"
    site = work / "site"
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.rmtree(site, ignore_errors=True)
    wheels.mkdir(parents=True)

    # Build exactly as pip would: import the backend and call its hook.
    env = dict(os.environ, METAPARTICLE_WORK_DIR=str(work / "build"))
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import metaparticle_build as b; "
            "print(b.build_wheel(sys.argv[2]))",
            str(PACKAGE_DIR / "backend"),
            str(wheels),
        ],
        env=env,
        cwd=PACKAGE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    if build.returncode != 0:
        print("error: building the wheel failed", file=sys.stderr)
        return 1
    wheel = wheels / build.stdout.strip().splitlines()[-1]

    # Installing a wheel whose files all go to site-packages is unpacking it.
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)

    # Run from the scratch directory so nothing from the source tree can be
    # imported by accident; only the tests' own directory (and tests/common, added by conftest.py) joins sys.path.
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    env.pop("METAPARTICLE_SIDECAR", None)
    if os.environ.get("MP_TEST_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["MP_TEST_PRELOAD"]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", str(HERE)] + sys.argv[2:]
    return subprocess.run(cmd, env=env, cwd=work).returncode


if __name__ == "__main__":
    sys.exit(main())
