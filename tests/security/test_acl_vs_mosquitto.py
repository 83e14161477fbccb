"""The same ACL file decides the same way in midge and in Debian's mosquitto broker."""

from __future__ import annotations

import os

import pytest

from midge.security import Security
from tests.brokerproc import free_port, start_mosquitto
from tests.security import aclprobe
from tests.security.conftest import Client, Config, SecurityConfig

MOSQUITTO_USER = "user root\n" if os.geteuid() == 0 else ""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return aclprobe.write_files(tmp_path_factory.mktemp("acl"))


@pytest.fixture(scope="module")
def mosquitto_results(tmp_path_factory, files):
    pw, acl = files
    port = free_port()
    directory = tmp_path_factory.mktemp("mosquitto")
    broker = start_mosquitto(f"{MOSQUITTO_USER}listener {port} 127.0.0.1\nallow_anonymous true\n"
                             f"password_file {pw}\nacl_file {acl}\n", directory, port)
    try:
        prober = aclprobe.Prober(port)
        try:
            return {case[:4]: prober.allowed(*case[:4]) for case in aclprobe.CASES}
        finally:
            prober.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("case", aclprobe.CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_midge_decides_like_mosquitto(files, mosquitto_results, case, log):
    username, client_id, topic, access, expected = case
    pw, acl = files
    security = Security(Config(security=SecurityConfig(allow_anonymous=True, password_file=pw, acl_file=acl)), log)
    ours = security.acl_check(Client(client_id=client_id, username=username), topic, access)
    assert mosquitto_results[case[:4]] is expected, "the expectation itself disagrees with mosquitto"
    assert ours is expected
