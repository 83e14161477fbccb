"""Issue 12, tested the way a user uses it: build the wheel, install it (plus pytest and
paho-mqtt) into a fresh venv outside the repository, and run a pytest file there that
uses the plugin's fixtures. The first test of that file is docs/embedding.md's example,
taken from the document itself.

Only the built wheel brings midge into that venv: no editable install, no source path.
Dependencies come through pip as usual (its cache makes a second run quick).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokerproc import TIMEOUT_SCALE

ROOT = Path(__file__).resolve().parents[2]

MORE_TESTS = '''
import asyncio
import ssl
import socket

import midge
import pytest


def test_midge_comes_from_the_installed_wheel():
    assert "site-packages" in midge.__file__, midge.__file__
    assert (__import__("pathlib").Path(midge.__file__).parent / "py.typed").exists()


def test_plain_broker(mqtt_broker, mqtt_broker_session):
    assert mqtt_broker.port != mqtt_broker_session.port
    with socket.create_connection((mqtt_broker.host, mqtt_broker.port)) as s:
        s.sendall(bytes.fromhex("100c00044d5154540402003c0000"))
        assert s.recv(4) == bytes.fromhex("20020000")


def test_tls_files(mqtt_tls_broker_session):
    b = mqtt_tls_broker_session
    context = ssl.create_default_context(cafile=str(b.cafile))
    context.load_cert_chain(b.certfile, b.keyfile)
    with socket.create_connection((b.host, b.port)) as s, context.wrap_socket(s, server_hostname=b.host) as t:
        assert t.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.midge_tls(psk=True)
def test_psk(mqtt_tls_broker):
    with socket.create_connection((mqtt_tls_broker.host, mqtt_tls_broker.port)) as s:
        with mqtt_tls_broker.client_context(psk=True).wrap_socket(s) as t:
            t.sendall(bytes.fromhex("100c00044d5154540402003c0000"))
            assert t.recv(4) == bytes.fromhex("20020000")


def test_factory_with_acl_and_websockets(mqtt_broker_factory, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic read public/#\\n")
    broker = mqtt_broker_factory(f"listener auto 127.0.0.1\\nallow_anonymous true\\nacl_file {acl}\\n"
                                 "listener auto 127.0.0.1\\nprotocol websockets\\n")
    assert [listener.kind for listener in broker.listeners] == ["mqtt", "ws"]


def test_async_form():
    async def main():
        async with midge.Broker() as broker:
            async with broker.messages("a") as messages:
                broker.publish("a", "b")
                assert (await messages.aget()).text == "b"
    asyncio.run(main())
'''


def doc_example() -> str:
    text = (ROOT / "docs" / "embedding.md").read_text()
    match = re.search(r"<!-- example: tls-test.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/embedding.md lost its tls-test example"
    return match.group(1)


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240 * TIMEOUT_SCALE, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_doc_example_is_under_ten_lines():
    lines = [line for line in doc_example().splitlines() if line.strip()]
    assert len(lines) < 10, lines


@pytest.mark.timeout(300)
def test_a_user_project_passes_with_the_installed_wheel(tmp_path):
    # The source as a clean copy (the build writes build/ and egg-info next to it).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source])
    wheel, = dist.glob("midge-*.whl")

    # A fresh venv; this interpreter's pip installs into it (no ensurepip: 3 s saved).
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel, "pytest", "paho-mqtt"])

    project = tmp_path / "project"
    project.mkdir()
    (project / "test_doc_example.py").write_text(doc_example())
    (project / "test_fixtures.py").write_text(MORE_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "MIDGE"))}
    result = subprocess.run([python, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120 * TIMEOUT_SCALE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b7 passed", result.stdout), result.stdout
    print(result.stdout)
