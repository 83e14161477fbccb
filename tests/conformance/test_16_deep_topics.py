"""16-deep-topics (issue 14): topic names and filters with more than 200 `/`.

Mosquitto 2.0 refuses them (TOPIC_HIERARCHY_LIMIT, CVE-2019-11779: it counts `/`
characters, so 201 levels pass and 202 do not), and so does midge: its routing walks
would otherwise cost stack and memory per level. What Debian's mosquitto 2.0.11 answers,
measured with 202, 1,000 and 65,535 levels:

- v3.1.1: the connection is closed, for SUBSCRIBE, UNSUBSCRIBE, PUBLISH (any QoS) and a
  CONNECT whose will topic is that deep (no CONNACK);
- v5: DISCONNECT 0x81 for SUBSCRIBE / UNSUBSCRIBE, DISCONNECT 0x82 for PUBLISH (QoS 0
  too), and a CONNECT with such a will topic is closed without a CONNACK.

The `$share/<group>/` prefix counts: Mosquitto checks the whole filter string.
"""

import pytest

from tests.conformance import packets as p
from tests.conformance.wire import Conn, connect, expect_publish, subscribe

VERSIONS = pytest.mark.parametrize("ver", [4, 5])

LIMIT = 200  # `/` characters in a topic or filter

TOO_DEEP = {
    "202 levels": "/".join(["a"] * (LIMIT + 2)),
    "1000 levels": "/".join(["a"] * 1000),
    "65535 slashes": "/" * 65535,
}
DEEP_OK = "/".join(["a"] * (LIMIT + 1))  # 200 `/`: accepted


def _closed(conn, ver, v5_code):
    """v3: a plain close. v5: DISCONNECT with `v5_code`, then the close."""
    conn.probe()  # a broker that wrongly kept the connection answers PINGRESP at once
    if ver == 5:
        conn.expect_disconnect(v5_code)
    else:
        conn.expect_closed()


@VERSIONS
@pytest.mark.parametrize("topic", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_subscribe_too_deep_closes(broker, cid, ver, topic):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_subscribe(1, topic, 1, proto_ver=ver))
    _closed(conn, ver, 0x81)


@VERSIONS
def test_subscribe_shared_prefix_counts(broker, cid, ver):
    # 200 `/` in the filter plus 2 in "$share/g/": refused as a whole.
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_subscribe(1, "$share/g/" + DEEP_OK, 1, proto_ver=ver))
    _closed(conn, ver, 0x81)


@VERSIONS
def test_unsubscribe_too_deep_closes(broker, cid, ver):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_unsubscribe(1, [TOO_DEEP["1000 levels"]], proto_ver=ver))
    _closed(conn, ver, 0x81)


@VERSIONS
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("topic", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_publish_too_deep_closes(broker, cid, ver, qos, topic):
    conn = connect(broker.port, cid(), ver)
    conn.send(p.gen_publish(topic, qos, b"x", mid=1 if qos else None, proto_ver=ver))
    _closed(conn, ver, 0x82)


@VERSIONS
@pytest.mark.parametrize("topic", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_will_topic_too_deep_closes_without_connack(broker, cid, ver, topic):
    conn = Conn(broker.port, ver)
    conn.send(p.gen_connect(cid(), proto_ver=ver, will_topic=topic, will_payload=b"w"))
    conn.expect_closed(probe=True)


@VERSIONS
def test_two_hundred_slashes_still_route(broker, cid, ver):
    # The limit is Mosquitto's: 201 levels are an ordinary topic, delivered and retained.
    sub = connect(broker.port, cid("s"), ver)
    subscribe(sub, DEEP_OK, 1)
    pub = connect(broker.port, cid("p"), ver)
    pub.send(p.gen_publish(DEEP_OK, 1, b"deep", retain=True, mid=7, proto_ver=ver))
    pub.expect(p.gen_puback(7, ver))
    mid = expect_publish(sub, DEEP_OK, b"deep", qos=1)
    sub.send(p.gen_puback(mid, ver))
    wild = "/".join(["+"] * (LIMIT + 1))
    late = connect(broker.port, cid("l"), ver)
    subscribe(late, wild, 0)
    expect_publish(late, DEEP_OK, b"deep", retain=True)
    pub.send(p.gen_publish(DEEP_OK, 0, b"", retain=True, proto_ver=ver))  # clear it
    pub.ping()
