"""What the security layer reads of a connection: the contract between `Security` and
the broker's `Client` (and the stand-in of a session restored from disk,
`persist.store.OfflineClient`)."""

from __future__ import annotations

from typing import Protocol

from midge.config.model import BridgeConfig, ListenerConfig


class Subject(Protocol):
    client_id: str | None
    username: str | None
    listener: ListenerConfig | None
    tls: object | None              # midge.security.identity.TlsInfo
    bridge: BridgeConfig | None     # set when midge's own bridge is the peer: not checked
    acl_cache: object | None        # Security's per-client cache (manager.ClientSecurity)
