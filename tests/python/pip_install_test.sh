#!/usr/bin/env bash
# What a user does: `pip install ./bindings/python` with no package index
# (PyPI is unreachable here), then `import metaparticle` from elsewhere.
# Usage: pip_install_test.sh PYTHON REPO_DIR WORK_DIR
# METAPARTICLE_LIBRARY (set by CTest) bundles this build's library instead of
# compiling the core again; the install path is otherwise the same.
set -euo pipefail
py=$1 repo=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
"$py" -m pip install --no-index --quiet --target "$work/site" "$repo/bindings/python"
cd "$work"
PYTHONPATH="$work/site" "$py" - <<'PY'
import metaparticle, os
print("imported", metaparticle.__file__)
assert metaparticle.__file__.startswith(os.environ["PYTHONPATH"]), "imported the wrong copy"
try:
    metaparticle.Lock("Not A Valid Name")
except metaparticle.InvalidArgumentError as e:
    assert "lowercase" in str(e), e
    print("bad name rejected by the native core:", e)
else:
    raise SystemExit("a bad lock name was accepted")
PY
echo "pip install ./bindings/python: 1 passed, 0 failed"
