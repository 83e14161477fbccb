"""Shared helpers: decode bytes as a server or a client would."""

from midge.protocol.codec import Decoder, encode
from midge.protocol.packets import Connect


def connect_bytes(version: int) -> bytes:
    return encode(Connect(version, "c", protocol_name="MQIsdp" if version == 3 else "MQTT"), version)


def as_server(data: bytes, version: int, **options) -> tuple[list, object]:
    """Decode `data` as a server would after a CONNECT of `version`: (packets, error)."""
    decoder = Decoder(**options)
    packets = decoder.feed(connect_bytes(version) + data)
    assert packets and isinstance(packets[0], Connect), decoder.error
    return packets[1:], decoder.error


def as_client(data: bytes, version: int, **options) -> tuple[list, object]:
    decoder = Decoder(version=version, role="client", **options)
    return decoder.feed(data), decoder.error
