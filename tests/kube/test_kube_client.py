"""kube::Client (libmetaparticle/kube) against the API server: runs the C++
program kube_client_check ($MP_KUBE_CLIENT_CHECK, set by ctest) on the fake,
or on a real cluster when MP_TEST_KUBECONFIG is set."""
import os
import subprocess

import pytest


def test_kube_client(kube):
    binary = os.environ.get("MP_KUBE_CLIENT_CHECK")
    if not binary:
        pytest.fail("set MP_KUBE_CLIENT_CHECK to the kube_client_check binary (ctest does this)", pytrace=False)
    deploy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")
    # On the fake, the deploy/ manifests are applied too (cluster-scoped objects
    # included, which a shared real cluster should not get from a test).
    args = [binary, kube.kubeconfig, kube.namespace] + (["--fake", "--deploy", deploy] if kube.is_fake else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), p.stdout + p.stderr
