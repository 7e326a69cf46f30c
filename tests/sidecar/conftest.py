"""Fixtures for the mp-sidecar protocol tests.

Each test gets its own sidecar on 127.0.0.1 with a free port (--listen
127.0.0.1:0; the port is read from the startup line). Process handling and
HTTP come from tests/common/mp_sidecar.py, shared with the Kubernetes suite.
The binary comes from $MP_SIDECAR_BIN (ctest sets it). Standard library only.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import mp_sidecar  # noqa: E402
from mp_sidecar import sidecar_binary  # noqa: E402,F401  (re-exported to test_protocol.py)

IDENTITY = "sidecar-identity"


class Sidecar(mp_sidecar.Sidecar):
    """Started on return, with --identity IDENTITY unless args give one."""

    def __init__(self, *args):
        identity = [] if "--identity" in args else ["--identity", IDENTITY]
        super().__init__([*identity, *args])
        self.wait_started()


@pytest.fixture
def sidecar():
    sc = Sidecar()
    yield sc
    problem = sc.stop()
    assert problem is None, problem


@pytest.fixture
def start_sidecar():
    """Factory for tests that need their own flags or control shutdown themselves."""
    started = []

    def start(*args):
        sc = Sidecar(*args)
        started.append(sc)
        return sc

    yield start
    for sc in started:
        sc.kill()
