"""Where and how a client connects: transport, address and TLS settings.

Plain data, shared by `midge pub/sub/rr` (filled from mosquitto_pub's flags) and
by bridges (filled from `bridge_*` options).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TlsOptions:
    """Client-side TLS. Certificate mode verifies the chain always (as Mosquitto);
    `insecure` only skips the host name check. `psk` (bytes) selects TLS-PSK."""

    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    keyform: str = "pem"
    min_version: str | None = None  # "tlsv1.1" | "tlsv1.2" | "tlsv1.3"
    ciphers: str | None = None
    insecure: bool = False
    alpn: list[str] = field(default_factory=list)
    use_os_certs: bool = False
    psk: bytes | None = None
    psk_identity: str | None = None
    engine: str | None = None
    server_hostname: str | None = None  # defaults to the host connected to
    names: str = "client"  # whose options failures name: "client" (--cafile) or "bridge" (bridge_cafile)


@dataclass(slots=True)
class ClientOptions:
    """Transport-level settings of one outgoing MQTT connection."""

    host: str = "localhost"
    port: int = 1883
    unix_path: str | None = None
    transport: str = "tcp"  # "tcp" or "websockets"
    ws_path: str = "/mqtt"
    bind_address: str | None = None
    nodelay: bool = False
    tls: TlsOptions | None = None
    proxy: str | None = None  # socks5h://[user[:password]@]host[:port]
    connect_timeout: float = 60.0
