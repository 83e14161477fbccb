"""Counters the broker keeps for `$SYS` (Mosquitto's `g_*` globals)."""


class Stats:
    __slots__ = (
        "messages_received", "messages_sent",
        "publish_received", "publish_sent", "publish_dropped",
        "bytes_received", "bytes_sent", "publish_bytes_received", "publish_bytes_sent",
        "sockets", "connections", "clients_expired", "clients_maximum",
    )

    messages_received: int
    messages_sent: int
    publish_received: int
    publish_sent: int
    publish_dropped: int
    bytes_received: int
    bytes_sent: int
    publish_bytes_received: int
    publish_bytes_sent: int
    sockets: int
    connections: int
    clients_expired: int
    clients_maximum: int

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}
