"""`midge rr`: mosquitto_rr's request/response (MQTT v5).

Subscribes to the `-e` response topic, publishes the request with the Response
Topic property set to it once the SUBACK arrives, prints the first response and
exits; `-W` times out with exit code 27.
"""

from __future__ import annotations

from midge.cli.clientargs import parse_or_exit
from midge.cli.clientconfig import ClientConfig
from midge.cli.pub import load_message
from midge.cli.sub import Subscriber
from midge.client.tool import run
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import Subscription


class Requester(Subscriber):
    reconnects = False
    def __init__(self, cfg: ClientConfig):
        super().__init__(cfg)
        self.request_topic = cfg.topics[0]
        self.sent = False

    async def connected(self) -> None:
        cfg = self.cfg
        subscription = Subscription(cfg.response_topic, cfg.qos,
                                    retain_as_published=cfg.retain_as_published,
                                    retain_handling=2 if cfg.no_retain else 0)
        self.awaiting_acks.add(self.session.subscribe([subscription], dict(cfg.properties["subscribe"])))

    def on_packet(self, packet) -> None:
        if packet.type == PacketType.SUBACK and not self.sent:
            self.sent = True
            self.send_request()
            return
        if packet.type == PacketType.PUBLISH:
            if self.cfg.no_retain and packet.retain:
                return
            self.show(packet)
            self.received += 1
            if self.received >= self.cfg.msg_count:
                self.finish(0)

    def send_request(self) -> None:
        cfg = self.cfg
        payload = cfg.message
        props = dict(cfg.properties["publish"])
        props[Property.RESPONSE_TOPIC] = cfg.response_topic
        self.session.publish(self.request_topic, payload, cfg.qos, False, props)


def main(argv: list[str]) -> int:
    cfg = parse_or_exit("rr", argv)
    if isinstance(cfg, int):
        return cfg
    if not load_message(cfg):  # same sources as pub: -m -f -s -n
        return 1
    return run(Requester(cfg))
