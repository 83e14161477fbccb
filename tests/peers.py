"""Real peers the tests talk to (mosquitto, mosquitto_pub/sub/rr, openssl).

A test that needs a missing peer skips on a user's machine; CI sets
MIDGE_REQUIRE_PEERS=1 so that the same situation fails instead of hiding a gap.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_PEERS = os.environ.get("MIDGE_REQUIRE_PEERS", "") not in ("", "0")


def require_peer(program: str) -> str:
    """Return the path of `program`, or skip (fail under MIDGE_REQUIRE_PEERS)."""
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if os.path.exists(f"/usr/sbin/{program}") else None
    )
    if path is None:
        message = f"peer {program!r} is not installed (apt-get install mosquitto mosquitto-clients openssl)"
        if REQUIRE_PEERS:
            pytest.fail(message + "; MIDGE_REQUIRE_PEERS is set", pytrace=False)
        pytest.skip(message)
    return path


def require_module(name: str):
    """Import a Python peer (paho.mqtt, websockets) or skip/fail like require_peer."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        message = f"Python peer {name!r} is not installed (pip install -e '.[test]')"
        if REQUIRE_PEERS:
            pytest.fail(message + "; MIDGE_REQUIRE_PEERS is set", pytrace=False)
        pytest.skip(message)
