"""`midge sub`: mosquitto_sub's flags, filters, exit rules and output."""

from __future__ import annotations

from midge.cli.clientargs import parse_or_exit
from midge.cli.clientconfig import ClientConfig
from midge.cli.output import MessagePrinter
from midge.client.tool import Tool, run
from midge.protocol.constants import PacketType
from midge.protocol.packets import Subscription
from midge.protocol.topics import topic_matches


class Subscriber(Tool):
    reconnects = True  # mosquitto_sub resubscribes after a lost connection
    def __init__(self, cfg: ClientConfig):
        super().__init__(cfg)
        self.printer = MessagePrinter(cfg.format, cfg.verbose, cfg.eol, cfg.pretty, cfg.random_filter)
        self.received = 0
        self.awaiting_acks: set[int] = set()

    async def connected(self) -> None:
        cfg = self.cfg
        v5 = cfg.protocol_version == 5
        subscriptions = [
            Subscription(topic, cfg.qos, retain_as_published=cfg.retain_as_published and v5,
                         retain_handling=2 if cfg.no_retain and v5 else 0)
            for topic in cfg.topics
        ]
        props = dict(cfg.properties["subscribe"]) if v5 else {}
        self.awaiting_acks.add(self.session.subscribe(subscriptions, props))
        for topic in cfg.unsub_topics:
            unsub_props = dict(cfg.properties["unsubscribe"]) if v5 else {}
            self.awaiting_acks.add(self.session.unsubscribe([topic], unsub_props))

    def on_packet(self, packet) -> None:
        kind = packet.type
        if kind == PacketType.PUBLISH:
            self.on_message(packet)
        elif kind == PacketType.SUBACK:
            if self.cfg.debug:
                granted = ", ".join(str(code) for code in packet.reason_codes)
                self.trace(f"Subscribed (mid: {packet.packet_id}): {granted}")
            self.awaiting_acks.discard(packet.packet_id)
            if packet.reason_codes and all(code >= 0x80 for code in packet.reason_codes):
                self.error("All subscription requests were denied.")
            if self.cfg.exit_after_sub and not self.awaiting_acks:
                self.finish(0)
        elif kind == PacketType.UNSUBACK:
            self.awaiting_acks.discard(packet.packet_id)
            if self.cfg.exit_after_sub and not self.awaiting_acks:
                self.finish(0)

    def on_message(self, message) -> None:
        cfg = self.cfg
        if cfg.retained_only and not message.retain:
            self.finish(0)
            return
        if cfg.no_retain and message.retain:
            return
        for pattern in cfg.filter_outs:
            if topic_matches(pattern, message.topic):
                return
        if cfg.remove_retained and message.retain:
            self.session.publish(message.topic, b"", 1, True)
        self.show(message)
        if cfg.msg_count:
            self.received += 1
            if self.received >= cfg.msg_count:
                self.finish(0)

    def show(self, message) -> None:
        self.write(self.printer.render(message))
        for line in self.printer.errors:
            self.error(line)


def main(argv: list[str]) -> int:
    cfg = parse_or_exit("sub", argv)
    if isinstance(cfg, int):
        return cfg
    return run(Subscriber(cfg))
