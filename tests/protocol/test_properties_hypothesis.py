"""Property tests: random valid packets round-trip; random and damaged bytes never raise out of feed."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import PacketType
from midge.protocol.constants import Property as P
from midge.protocol.errors import MQTTError
from midge.protocol.packets import (
    Auth, Connack, Connect, Disconnect, Pingreq, Pingresp, Puback, Pubcomp, Publish, Pubrec,
    Pubrel, Suback, Subscribe, Subscription, Unsuback, Unsubscribe, Will,
)
from midge.protocol.properties import (
    BINARY, BYTE, FOUR_BYTE, PROPERTY_SPECS, STRING, TWO_BYTE, VARINT, WILL, _not_zero,
)
from tests.protocol.helpers import connect_bytes

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters MQTT allows in strings (no controls, surrogates, unassigned / non-characters).
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=8)
level = text.filter(lambda s: "/" not in s and "+" not in s and "#" not in s)
topic_name = st.lists(level, min_size=1, max_size=4).map("/".join).filter(bool)
topic_filter = st.one_of(
    st.just("#"),
    st.tuples(st.lists(st.one_of(st.just("+"), level), min_size=1, max_size=4), st.booleans()).map(
        lambda t: "/".join(t[0] + (["#"] if t[1] else []))).filter(bool),
)
packet_id = st.integers(1, 65535)


def value_for(ident):
    kind, _, check = PROPERTY_SPECS[ident]
    low = 1 if check is _not_zero else 0
    if ident == P.USER_PROPERTY:
        return st.lists(st.tuples(text, text), min_size=1, max_size=3)
    if kind == BYTE:
        return st.integers(0, 1)
    if kind == TWO_BYTE:
        return st.integers(low, 0xFFFF)
    if kind == FOUR_BYTE:
        return st.integers(low, 0xFFFFFFFF)
    if kind == VARINT:
        return st.integers(1, 268_435_455)
    if kind == STRING:
        return text
    if kind == BINARY:
        return st.binary(max_size=10)
    raise AssertionError(ident)


def properties_for(packet_type, version, exclude=(), sub_ids=1):
    if version != 5:
        return st.just({})
    idents = sorted(i for i, spec in PROPERTY_SPECS.items()
                    if packet_type in spec[1] and i not in exclude)

    def build(chosen):
        fields = {}
        for ident in chosen:
            if ident == P.SUBSCRIPTION_IDENTIFIER:
                fields[ident] = st.lists(st.integers(1, 268_435_455), min_size=1, max_size=sub_ids)
            else:
                fields[ident] = value_for(ident)
        return st.fixed_dictionaries(fields)
    return st.lists(st.sampled_from(idents), unique=True, max_size=4).flatmap(build)


def publish(version, server_sends):
    exclude = () if server_sends else (P.SUBSCRIPTION_IDENTIFIER,)
    return st.builds(
        lambda topic, payload, qos, retain, dup, pid, props: Publish(
            topic, payload, qos, retain, dup and qos > 0, pid if qos else None, props),
        topic_name, st.binary(max_size=40), st.integers(0, 2), st.booleans(), st.booleans(),
        packet_id, properties_for(PacketType.PUBLISH, version, exclude, sub_ids=3))


def ack(cls, version, codes):
    if version != 5:
        return st.builds(cls, packet_id)
    return st.builds(cls, packet_id, st.sampled_from(sorted(codes)),
                     properties_for(cls.type, version))


PUBACK_CODES = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}
PUBREL_CODES = {0x00, 0x92}


def subscription(version):
    if version != 5:
        return st.builds(Subscription, topic_filter, st.integers(0, 2))
    return st.builds(Subscription, topic_filter, st.integers(0, 2), st.booleans(), st.booleans(),
                     st.integers(0, 2))


def client_packets(version):
    choices = [
        publish(version, server_sends=False),
        ack(Puback, version, PUBACK_CODES), ack(Pubrec, version, PUBACK_CODES),
        ack(Pubrel, version, PUBREL_CODES), ack(Pubcomp, version, PUBREL_CODES),
        st.builds(Subscribe, packet_id, st.lists(subscription(version), min_size=1, max_size=3),
                  properties_for(PacketType.SUBSCRIBE, version)),
        st.builds(Unsubscribe, packet_id, st.lists(topic_filter, min_size=1, max_size=3),
                  properties_for(PacketType.UNSUBSCRIBE, version)),
        st.builds(Pingreq),
    ]
    if version == 5:
        choices += [
            st.builds(Disconnect, st.sampled_from([0, 4, 0x80, 0x81, 0x82, 0x93]),
                      properties_for(PacketType.DISCONNECT, 5, (P.SERVER_REFERENCE,))),
            st.builds(Auth, st.sampled_from([0, 0x18, 0x19]),
                      properties_for(PacketType.AUTH, 5, (P.AUTHENTICATION_DATA,))),
        ]
    else:
        choices.append(st.builds(Disconnect))
    return st.one_of(choices)


def server_packets(version):
    choices = [
        st.builds(Connack, st.booleans(), st.integers(0, 5) if version != 5 else st.integers(0, 255),
                  properties_for(PacketType.CONNACK, version, (P.AUTHENTICATION_DATA,))),
        publish(version, server_sends=True),
        ack(Puback, version, PUBACK_CODES), ack(Pubrel, version, PUBREL_CODES),
        st.builds(Suback, packet_id, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4),
                  properties_for(PacketType.SUBACK, version)),
        st.builds(Unsuback, packet_id,
                  st.lists(st.sampled_from([0, 0x11, 0x80]), min_size=1, max_size=3)
                  if version == 5 else st.just([]),
                  properties_for(PacketType.UNSUBACK, version)),
        st.builds(Pingresp),
    ]
    if version == 5:
        choices.append(st.builds(Disconnect, st.sampled_from([0, 0x8B, 0x9C]),
                                 properties_for(PacketType.DISCONNECT, 5)))
    return st.one_of(choices)


@st.composite
def connects(draw, version=None):
    version = version or draw(st.sampled_from([3, 4, 5]))
    will = None
    if draw(st.booleans()):
        will = Will(draw(topic_name), draw(st.binary(max_size=20)), draw(st.integers(0, 2)),
                    draw(st.booleans()), draw(properties_for(WILL, version)))
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=10))
    if version != 5 and username is None:
        password = None
    properties = draw(properties_for(PacketType.CONNECT, version, (P.AUTHENTICATION_DATA,)))
    return Connect(version, draw(text), draw(st.booleans()), draw(st.integers(0, 65535)),
                   username, password, will, properties, "MQIsdp" if version == 3 else "MQTT",
                   draw(st.booleans()))


def assert_clean(decoder, packets):
    """Nothing escaped, any error is an MQTTError raised on purpose (not the safety net)."""
    assert decoder.error is None or isinstance(decoder.error, MQTTError)
    if decoder.error is not None:
        assert not str(decoder.error).startswith("malformed packet ("), decoder.error
    assert all(hasattr(p, "type") for p in packets)


# -- Round trips -------------------------------------------------------------------------------

@SETTINGS
@given(connects())
def test_connect_round_trip(packet):
    decoder = Decoder()
    assert decoder.feed(encode(packet, packet.protocol_version)) == [packet]
    assert decoder.version == packet.protocol_version


@SETTINGS
@given(st.sampled_from([3, 4, 5]).flatmap(
    lambda v: st.tuples(st.just(v), st.lists(client_packets(v), min_size=1, max_size=5), st.data())))
def test_client_packets_round_trip(args):
    version, packets, data = args
    wire = connect_bytes(version) + b"".join(encode(p, version) for p in packets)
    cut = data.draw(st.integers(0, len(wire)))
    decoder = Decoder()
    out = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
    assert decoder.error is None
    assert out[1:] == packets


@SETTINGS
@given(st.sampled_from([3, 4, 5]).flatmap(
    lambda v: st.tuples(st.just(v), st.lists(server_packets(v), min_size=1, max_size=5), st.data())))
def test_server_packets_round_trip(args):
    version, packets, data = args
    wire = b"".join(encode(p, version) for p in packets)
    cut = data.draw(st.integers(0, len(wire)))
    decoder = Decoder(version=version, role="client")
    out = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
    assert decoder.error is None
    assert out == packets


# -- Hostile input ---------------------------------------------------------------------------

@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(["server", "client", "connected"]),
       st.sampled_from([3, 4, 5]), st.none() | st.integers(2, 100))
def test_random_bytes_never_raise(data, role, version, max_packet_size):
    if role == "client":
        decoder = Decoder(version=version, role="client", max_packet_size=max_packet_size)
        packets = decoder.feed(data)
    else:
        decoder = Decoder(max_packet_size=None if role == "connected" else max_packet_size)
        packets = decoder.feed(connect_bytes(version)) if role == "connected" else []
        decoder.max_packet_size = max_packet_size
        packets += decoder.feed(data)
    assert_clean(decoder, packets)


@st.composite
def damaged(draw):
    """A valid packet stream with one kind of damage the fixed header cannot reveal."""
    version = draw(st.sampled_from([3, 4, 5]))
    server_side = draw(st.booleans())
    packets = draw(st.lists(client_packets(version) if server_side else server_packets(version),
                            min_size=1, max_size=3))
    wire = bytearray(b"".join(encode(p, version) for p in packets))
    kind = draw(st.sampled_from(["truncate-body", "flip", "insert", "cut"]))
    if kind == "truncate-body":
        # Shorten the first packet's body and fix its remaining length to match.
        first = encode(packets[0], version)
        header = 2 if len(first) - 2 < 128 else 3 if len(first) - 3 < 16384 else 4
        body = first[header:]
        keep = draw(st.integers(0, max(0, len(body) - 1)))
        short = body[:keep]
        wire = bytearray(bytes((first[0], len(short))) + short if len(short) < 128
                         else bytes((first[0], 0x80 | len(short) & 0x7F, len(short) >> 7)) + short)
        wire += b"".join(encode(p, version) for p in packets[1:])
    elif kind == "flip":
        index = draw(st.integers(0, len(wire) - 1))
        wire[index] ^= draw(st.integers(1, 255))
    elif kind == "insert":
        index = draw(st.integers(0, len(wire)))
        wire[index:index] = draw(st.binary(min_size=1, max_size=8))
    else:
        wire = wire[:draw(st.integers(0, len(wire)))]
    return version, server_side, bytes(wire)


@SETTINGS
@given(damaged(), st.data())
def test_damaged_packets_never_raise(case, data):
    version, server_side, wire = case
    if server_side:
        decoder = Decoder()
        packets = decoder.feed(connect_bytes(version))
    else:
        decoder = Decoder(version=version, role="client")
        packets = []
    cut = data.draw(st.integers(0, len(wire)))
    packets += decoder.feed(wire[:cut])
    packets += decoder.feed(wire[cut:])
    assert_clean(decoder, packets)


@SETTINGS
@given(connects(), st.data())
def test_damaged_connect_never_raises(packet, data):
    wire = bytearray(encode(packet, packet.protocol_version))
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] ^= data.draw(st.integers(1, 255))
    decoder = Decoder()
    assert_clean(decoder, decoder.feed(bytes(wire)))


@SETTINGS
@given(properties_for(PacketType.PUBLISH, 5, sub_ids=3), st.sets(st.sampled_from(sorted(PROPERTY_SPECS))))
def test_properties_without_is_the_decoded_block_minus_the_dropped(props, drop):
    # Issue 15 item 3: forwarding cuts hop properties out of the received bytes.
    from midge.protocol.properties import (
        decode_properties, encode_properties, encode_varint, properties_without,
    )
    kept = properties_without(encode_properties(props), drop)
    block = encode_varint(len(kept))
    decoded, _ = decode_properties(block + kept, 0, len(block) + len(kept), PacketType.PUBLISH,
                                   repeat_subscription_id=True)
    assert decoded == {k: v for k, v in props.items() if k not in drop}
    assert kept == encode_properties({k: v for k, v in props.items() if k not in drop})
