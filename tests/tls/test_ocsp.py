"""OCSP checking of client certificates against `openssl ocsp` run as a local responder."""

import asyncio
import subprocess
import time

import pytest

from midge.security.identity import TlsInfo
from midge.server.ocsp import OcspChecker
from midge.server.tls_context import TlsListenerContext
from tests.brokerproc import free_port
from tests.peers import require_peer
from tests.tls.memory import Pair, client_context, listener


@pytest.fixture
def responder(pki, tmp_path):
    """Start `openssl ocsp` serving an index: responder(good=[...], revoked=[...]) -> URL."""
    processes = []

    def start(good=(), revoked=()):
        openssl = require_peer("openssl")
        index = pki.ocsp_index(good=good, revoked=revoked, filename=f"index-{len(processes)}.txt")
        port = free_port()
        log = tmp_path / f"ocsp-{len(processes)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([openssl, "ocsp", "-index", str(index), "-port", str(port),
                                     "-rsigner", str(pki.ca_cert), "-rkey", str(pki.ca_key), "-CA", str(pki.ca_cert),
                                     "-ignore_err", "-nmin", "5"], stdout=out, stderr=subprocess.STDOUT)
        processes.append(proc)
        # A TCP probe would wedge the single-threaded responder: wait for its log line instead.
        deadline = time.monotonic() + 10
        while b"waiting for OCSP client connections" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)  # polling interval of a readiness probe, not synchronisation
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in processes:
        proc.terminate()
        proc.wait(10)


def info_for(pki, cert_pair):
    from cryptography.hazmat.primitives.serialization import Encoding
    leaf = pki.cert(cert_pair).public_bytes(Encoding.DER)
    root = pki.cert(pki.ca_cert).public_bytes(Encoding.DER)
    return TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", peer_cert=leaf, verified_chain=(leaf, root),
                   peer="127.0.0.1:5")


def test_good_revoked_and_cache(pki, responder):
    good, bad = pki.client("ocsp-good", key_type="ec"), pki.client("ocsp-bad", key_type="ec")
    url = responder(good=[good], revoked=[bad])
    checker = OcspChecker(responder=url, timeout=5)

    async def scenario():
        assert await checker.check(info_for(pki, good), "8883") is None
        failure = await checker.check(info_for(pki, bad), "8883")
        assert failure.kind == "revoked" and "revoked on" in failure.reason and failure.peer == "127.0.0.1:5"
        assert checker.requests == 2
        # cached: no new round trip; concurrent checks of one certificate share one request
        assert await checker.check(info_for(pki, good), "8883") is None
        assert checker.requests == 2
    asyncio.run(scenario())


def test_concurrent_checks_share_one_request(pki, responder):
    good = pki.client("ocsp-good", key_type="ec")
    checker = OcspChecker(responder=responder(good=[good]), timeout=5)

    async def scenario():
        results = await asyncio.gather(*(checker.check(info_for(pki, good)) for _ in range(5)))
        assert results == [None] * 5
        assert checker.requests == 1
    asyncio.run(scenario())


def test_responder_from_aia(pki, responder):
    port_url = responder()  # placeholder to get a running responder URL
    cert = pki.client("ocsp-aia", key_type="ec", ocsp_url=port_url)
    # this responder's index does not list the certificate: status unknown
    checker = OcspChecker(timeout=5)
    failure = asyncio.run(checker.check(info_for(pki, cert)))
    assert failure.kind == "ocsp" and "does not know" in failure.reason and port_url in failure.reason
    soft = OcspChecker(timeout=5, soft_fail=True)
    assert asyncio.run(soft.check(info_for(pki, cert))) is None


def test_unreachable_responder_hard_and_soft(pki):
    cert = pki.client("ocsp-nowhere", key_type="ec")
    url = f"http://127.0.0.1:{free_port()}"
    failure = asyncio.run(OcspChecker(responder=url, timeout=2).check(info_for(pki, cert)))
    assert failure.kind == "ocsp" and "cannot reach" in failure.reason
    warnings = []
    log = type("Log", (), {"warning": lambda self, line: warnings.append(line)})()
    assert asyncio.run(OcspChecker(responder=url, timeout=2, soft_fail=True, log=log)
                       .check(info_for(pki, cert))) is None
    assert "ocsp_soft_fail" in warnings[0]


def test_no_responder_known(pki):
    cert = pki.client("ocsp-none", key_type="ec")
    failure = asyncio.run(OcspChecker().check(info_for(pki, cert)))
    assert failure.kind == "ocsp" and "ocsp_responder" in failure.reason


def test_listener_context_checks_after_handshake(pki, responder):
    good, bad = pki.client("ocsp-ctx-good", key_type="ec"), pki.client("ocsp-ctx-bad", key_type="ec")
    url = responder(good=[good], revoked=[bad])
    lst = listener(pki, require_certificate=True, require_ocsp=True, ocsp_responder=url, ocsp_timeout=5)
    ctx = TlsListenerContext.from_listener(lst, None, None)
    results = {}
    for name, cert in (("good", good), ("bad", bad)):
        p = Pair(ctx.new_stage("127.0.0.1:9"), client_context(pki, cert))
        assert p.handshake()
        assert len(p.stage.info.verified_chain) == 2
        results[name] = asyncio.run(ctx.revocation.check(p.stage.info))
    assert results["good"] is None
    assert results["bad"].kind == "revoked" and results["bad"].listener == "8883"


def test_broker_refuses_a_certificate_the_responder_revoked(pki, responder, tmp_path):
    from tests.brokerproc import start_midge
    exe = require_peer("mosquitto_pub")
    good, bad = pki.client("ocsp-e2e-good", key_type="ec"), pki.client("ocsp-e2e-bad", key_type="ec")
    url = responder(good=[good], revoked=[bad])
    port = free_port()
    broker = start_midge(f"listener {port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
                         f"keyfile {pki.server_key}\nrequire_certificate true\nuse_identity_as_username true\n"
                         f"require_ocsp true\nocsp_responder {url}\nocsp_timeout 5\n", tmp_path, port, extra_args=["-v"])
    try:
        def publish(cert):
            return subprocess.run([exe, "-h", "localhost", "-p", str(port), "--cafile", str(pki.ca_cert),
                                   "--cert", str(cert[0]), "--key", str(cert[1]), "-t", "t", "-m", "x"],
                                  capture_output=True, text=True, timeout=5)
        try:
            result = publish(good)
        except subprocess.TimeoutExpired:
            raise AssertionError(broker.output)
        assert result.returncode == 0, result.stderr + broker.output
        broker.wait_for_log("u'ocsp-e2e-good'")
        mark = broker.mark()
        result = publish(bad)
        assert result.returncode != 0
        line = broker.wait_for_log("says the client certificate", start=mark)
        assert "revoked on" in line and "ocsp-e2e-bad" in line
    finally:
        broker.stop()
