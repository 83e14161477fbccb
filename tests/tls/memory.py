"""Pair a midge TlsStage with a client ssl.SSLObject over MemoryBIOs (no sockets)."""

from __future__ import annotations

import ssl

from midge.config.model import ListenerConfig, SecurityConfig


def listener(pki=None, psk_file=None, **options) -> ListenerConfig:
    """A real ListenerConfig on port 8883: options by their attribute names, `pki` gives
    certfile, keyfile and cafile, `psk_file` goes to its security options."""
    if pki is not None:
        options = dict(certfile=str(pki.server_cert), keyfile=str(pki.server_key),
                       cafile=str(pki.ca_cert)) | options
    unknown = set(options) - set(vars(ListenerConfig()))
    assert not unknown, f"not listener options: {unknown}"
    return ListenerConfig(port=8883, security=SecurityConfig(psk_file=psk_file), **options)


def client_context(pki=None, cert=None, version=None, psk=None, ciphers=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if pki is not None:
        ctx.load_verify_locations(pki.ca_cert)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(*cert)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if psk is not None:
        identity, key = psk
        ctx.set_psk_client_callback(lambda hint: (identity, key))
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


class Pair:
    """A client SSLObject wired to a server TlsStage; `run()` pumps until quiet."""

    def __init__(self, stage, client_ctx: ssl.SSLContext, server_hostname="localhost"):
        self.stage = stage
        self.cin, self.cout = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.cin, self.cout, server_hostname=server_hostname)
        self.client_error: ssl.SSLError | None = None
        self.received = b""

    def _pump(self) -> bool:
        moved = False
        out = self.cout.read()
        if out:
            self.received += self.stage.feed(out)
            moved = True
        back = self.stage.data_to_send()
        if back:
            self.cin.write(back)
            moved = True
        return moved

    def handshake(self) -> bool:
        """True when both sides finished; client errors are kept in client_error."""
        for _ in range(50):
            done = False
            if self.client_error is None:
                try:
                    self.client.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    self.client_error = exc
            moved = self._pump()
            if done and self.stage.handshake_complete and not moved:
                break
            if not moved and self.client_error is not None:
                break
            if not moved and done:
                break
        if self.client_error is None:
            self._pump()
            # TLS 1.3: the client learns of a refused certificate on its next read.
            try:
                self.client.write(b"")
                self.client.read(1)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                self.client_error = exc
        return self.client_error is None and self.stage.handshake_complete

    def client_send(self, data: bytes) -> bytes:
        self.client.write(data)
        before = len(self.received)
        self._pump()
        return self.received[before:]

    def server_send(self, data: bytes) -> bytes:
        self.stage.send(data)
        self._pump()
        chunks = []
        while True:
            try:
                chunks.append(self.client.read(65536))
            except ssl.SSLWantReadError:
                break
        return b"".join(chunks)
