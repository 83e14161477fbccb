"""pytest fixtures for a real MQTT broker, registered through the `pytest11` entry point
(installing midge is enough; nothing to add to conftest.py).

- `mqtt_broker`: a running broker on 127.0.0.1 and a free port (`.host`, `.port`),
  anonymous access; `mqtt_broker_session` is the same for the whole session.
- `mqtt_tls_broker`: mutual TLS with a development PKI made once per session (the
  `midge certs` code): `.cafile`, a client certificate as `.certfile` / `.keyfile`, and
  `.client_context()`; the certificate's CN (`client`) is the MQTT username. With
  `@pytest.mark.midge_tls(psk=True)` the listener also takes TLS-PSK: `.psk_identity`,
  `.psk_key` and `.client_context(psk=True)`. `mqtt_tls_broker_session` is the
  session-scoped variant (without PSK).
- `mqtt_broker_factory(config_text=None, **keywords)`: any other broker (ACLs, password
  files, WebSocket listeners; `listener auto` picks a free port), stopped after the test.
- `mqtt_pki`: the session's development PKI (`.cafile`, `.server_certfile`,
  `.server_keyfile`, `.client_files("client")`).

Every value is a running `midge.Broker`, so `.publish()`, `.messages()`, `.subscribe()`
and `.reload()` work too. Brokers log through the `midge` logger, which pytest captures.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from midge.embed import Broker

CLIENT_NAME = "client"


class TlsBroker(Broker):
    """A broker on one mutual-TLS listener (127.0.0.1, free port) of a development PKI.

    Clients must present a certificate of the PKI's CA; its CN becomes the username
    (`use_identity_as_username`). With `psk=True` the same listener also accepts TLS-PSK
    with `psk_identity` / `psk_key` (the identity becomes the username too).
    """

    def __init__(self, pki, *, psk: bool = False, **keywords) -> None:
        self.pki = pki
        self.cafile: Path = pki.cafile
        self.certfile, self.keyfile = pki.client_files(CLIENT_NAME)
        self.psk_identity: str | None = None
        self.psk_key: bytes | None = None
        lines = ["listener auto 127.0.0.1",
                 f"cafile {pki.cafile}",
                 f"certfile {pki.server_certfile}",
                 f"keyfile {pki.server_keyfile}",
                 "require_certificate true",
                 "use_identity_as_username true"]
        if psk:
            self.psk_identity = "psk-client"
            self.psk_key = secrets.token_bytes(16)
            psk_file = pki.directory / f"psk-{secrets.token_hex(4)}.txt"
            psk_file.write_text(f"{self.psk_identity}:{self.psk_key.hex()}\n")
            psk_file.chmod(0o600)
            lines += ["psk_hint midge", f"psk_file {psk_file}"]
        super().__init__("\n".join(lines) + "\n", **keywords)

    def client_context(self, psk: bool = False) -> ssl.SSLContext:
        """An SSLContext for a client of this broker: trusts the CA, presents the client
        certificate, checks the host name (the server certificate names localhost,
        127.0.0.1 and ::1). `psk=True`: a TLS-PSK context (TLS 1.2 PSK ciphers) with the
        broker's identity and key."""
        if psk:
            if self.psk_key is None:
                raise ValueError("this broker has no PSK: mark the test with @pytest.mark.midge_tls(psk=True)")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # PSK authenticates both sides; no certificates
            # TLS 1.2 PSK ciphers, as Mosquitto's clients use: OpenSSL ends a TLS 1.3 PSK
            # handshake with "certificate required" on a listener that requires certificates.
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers("PSK")
            identity, key = self.psk_identity, self.psk_key
            context.set_psk_client_callback(lambda hint: (identity, key))
            return context
        context = ssl.create_default_context(cafile=str(self.cafile))
        context.load_cert_chain(str(self.certfile), str(self.keyfile))
        return context


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "midge_tls(psk=False): options of the mqtt_tls_broker fixture (psk=True: "
        "its listener also accepts TLS-PSK)")


def _make_pki(directory: Path):
    from midge.cli.certs import make_dev_pki

    # EC keys: a PKI in milliseconds rather than RSA's tenths of a second per key.
    return make_dev_pki(directory, clients=[CLIENT_NAME], key_type="ec", days=30)


@pytest.fixture(scope="session")
def mqtt_pki(tmp_path_factory: pytest.TempPathFactory):
    """The session's development PKI (CA, server and `client` certificates)."""
    return _make_pki(tmp_path_factory.mktemp("midge-pki"))


@pytest.fixture
def mqtt_broker() -> Iterator[Broker]:
    """A running broker on 127.0.0.1 and a free port, anonymous access."""
    with Broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def mqtt_broker_session() -> Iterator[Broker]:
    """`mqtt_broker` shared by the whole session."""
    with Broker() as broker:
        yield broker


@pytest.fixture
def mqtt_tls_broker(mqtt_pki, request: pytest.FixtureRequest) -> Iterator[TlsBroker]:
    """A running mutual-TLS broker; `@pytest.mark.midge_tls(psk=True)` adds TLS-PSK."""
    marker = request.node.get_closest_marker("midge_tls")
    options = dict(marker.kwargs) if marker is not None else {}
    with TlsBroker(mqtt_pki, psk=bool(options.pop("psk", False))) as broker:
        if options:
            raise pytest.UsageError(f"midge_tls: unknown option(s) {', '.join(sorted(options))}")
        yield broker


@pytest.fixture(scope="session")
def mqtt_tls_broker_session(mqtt_pki) -> Iterator[TlsBroker]:
    """`mqtt_tls_broker` shared by the whole session (no PSK)."""
    with TlsBroker(mqtt_pki) as broker:
        yield broker


@pytest.fixture
def mqtt_broker_factory() -> Iterator[Callable[..., Broker]]:
    """`factory(config_text=None, **keywords)` -> a running Broker, stopped after the test."""
    brokers: list[Broker] = []

    def factory(config_text: str | None = None, **keywords) -> Broker:
        broker = Broker(config_text, **keywords)
        broker.start()
        brokers.append(broker)
        return broker

    yield factory
    for broker in reversed(brokers):
        broker.stop()
