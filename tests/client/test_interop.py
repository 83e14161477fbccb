"""midge pub/sub/rr against Debian's mosquitto broker, interleaved with Mosquitto's
own clients: what one publishes the other receives, and `midge sub` prints exactly
the bytes `mosquitto_sub` prints for the same messages and flags."""

from __future__ import annotations

import re

import pytest

from tests.client.tools import finish, midge, mosquitto, run, start_subscriber

V5_PROPS = ["-D", "publish", "user-property", "k", "v", "-D", "publish", "user-property", "k2", "v 2",
            "-D", "publish", "content-type", "text/plain", "-D", "publish", "correlation-data", "c0rr",
            "-D", "publish", "response-topic", "re/ply", "-D", "publish", "message-expiry-interval", "300",
            "-D", "publish", "payload-format-indicator", "1"]

# (payload args, extra publish args); every message goes to topic t/<n>
MESSAGES = [
    (["-m", "hello world"], []),
    (["-n"], []),
    (["-m", '{"a": [1, 2.5, "x", true, null], "b": {}, "c": {"d": -3e-7}}'], []),
    (["-m", 'quote " back\\slash\ttab'], []),
    (["-f", "BINARY"], []),
    (["-m", "with props"], ["-V", "5", *V5_PROPS]),
    (["-m", "[]"], ["-q", "1"]),
    (["-m", "retained one"], ["-r"]),
]

FORMATS = [
    [],
    ["-v"],
    ["-N"],
    ["-v", "-N"],
    ["-F", "%t|%p|%l|%q|%r|%m|%%|%-12t|%12t|%.3t|%05l|%-5l;|%x|%X|%6x|%-8p|%A|%C|%D|%E|%F|%P|%R|%S\\t@@\\\\"],
    ["-F", "%j"],
    ["-F", "%J"],
    ["-F", "%j", "--pretty"],
    ["-F", "%J", "--pretty"],
    ["-F", "%015X|%-020x|%3p", "-N"],
    ["-F", "%r %t", "--retain-as-published"],
    ["-F", "%t\\0\\a\\e\\r\\v\\n%-p|%-.2t|%08.3t|%.t|@@|@Y"],
]


def publish_all(broker, tmp_path) -> None:
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) + b"\0tail")
    for index, (payload, extra) in enumerate(MESSAGES):
        payload = [str(binary) if arg == "BINARY" else arg for arg in payload]
        result = run(mosquitto("pub", "-p", str(broker.port), "-t", f"t/{index}", *payload, *extra))
        assert result.returncode == 0, result.stderr


def without_time(data: bytes) -> bytes:
    return re.sub(rb'"tst":(\t?)"[^"]*"', rb'"tst":\1"T"', data)


@pytest.mark.parametrize("flags", FORMATS, ids=lambda f: " ".join(f) or "default")
@pytest.mark.parametrize("version", ["311", "5"])
def test_output_identical_to_mosquitto_sub(broker, tmp_path, flags, version, request):
    run(mosquitto("pub", "-p", str(broker.port), "-t", "t/7", "-r", "-n"))  # clear old retained
    common = ["-p", str(broker.port), "-t", "t/#", "-q", "1", "-V", version, "-C", str(len(MESSAGES)), *flags]
    ident = request.node.name.encode().hex()[-16:]
    theirs = start_subscriber(broker, mosquitto("sub", *common), f"m-{ident}")
    ours = start_subscriber(broker, midge("sub", *common), f"g-{ident}")
    publish_all(broker, tmp_path)
    rc_theirs, out_theirs, err_theirs = finish(theirs)
    rc_ours, out_ours, err_ours = finish(ours)
    assert rc_ours == rc_theirs == 0, (err_ours, err_theirs)
    assert without_time(out_ours) == without_time(out_theirs)
    assert err_ours.replace(b"midge", b"mosquitto") == err_theirs


def test_midge_pub_to_mosquitto_sub(broker, tmp_path):
    port = str(broker.port)
    sub = start_subscriber(broker, mosquitto("sub", "-p", port, "-t", "mp/#", "-v", "-C", "5", "-q", "2"),
                           "mp-sub")
    assert run(midge("pub", "-p", port, "-t", "mp/0", "-m", "qos0")).returncode == 0
    assert run(midge("pub", "-p", port, "-t", "mp/1", "-m", "qos1", "-q", "1")).returncode == 0
    assert run(midge("pub", "-p", port, "-t", "mp/2", "-m", "qos2", "-q", "2", "-V", "5")).returncode == 0
    result = run(midge("pub", "-p", port, "-t", "mp/l", "-l", "-q", "1"), input=b"line one\nline two")
    assert result.returncode == 0, result.stderr
    rc, out, err = finish(sub)
    assert rc == 0, err
    assert out == b"mp/0 qos0\nmp/1 qos1\nmp/2 qos2\nmp/l line one\nmp/l line two\n"


def test_mosquitto_pub_to_midge_sub_qos2_and_properties(broker):
    port = str(broker.port)
    sub = start_subscriber(broker, midge("sub", "-p", port, "-t", "pm/#", "-q", "2", "-V", "5", "-C", "2",
                                            "-F", "%t %q %p %P %C"), "pm-sub")
    assert run(mosquitto("pub", "-p", port, "-t", "pm/a", "-m", "one", "-q", "2")).returncode == 0
    assert run(mosquitto("pub", "-p", port, "-t", "pm/b", "-m", "two", "-q", "1", "-V", "5",
                         "-D", "publish", "user-property", "x", "y",
                         "-D", "publish", "content-type", "ct")).returncode == 0
    rc, out, err = finish(sub)
    assert rc == 0, err
    # QoS 2 messages are delivered at PUBREL (as libmosquitto), so order may vary.
    assert sorted(out.splitlines(keepends=True)) == [b"pm/a 2 one  \n", b"pm/b 1 two x:y ct\n"]


def test_debug_trace_matches_mosquitto_pub(broker):
    args = ["-p", str(broker.port), "-t", "dbg", "-m", "x", "-q", "1", "-d", "-i", "tracer"]
    ours = run(midge("pub", *args))
    theirs = run(mosquitto("pub", *args))
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout


def test_request_response(broker):
    port = str(broker.port)
    # A responder: mosquitto_sub prints the response topic of the request; we then reply.
    responder = start_subscriber(broker, mosquitto("sub", "-p", port, "-V", "5", "-t", "rq", "-C", "1",
                                                      "-F", "%R %p"), "responder")
    mark = broker.mark()
    from tests.client.tools import start
    requester = start([*midge("rr", "-p", port, "-t", "rq", "-e", "rs", "-m", "ping", "-i", "asker")])
    broker.wait_for_log("Sending SUBACK to asker", start=mark)
    rc, out, err = finish(responder)
    assert out == b"rs ping\n"
    assert run(mosquitto("pub", "-p", port, "-t", "rs", "-m", "pong")).returncode == 0
    rc, out, err = finish(requester)
    assert (rc, out) == (0, b"pong\n"), err


@pytest.mark.parametrize("tool,extra", [("sub", []), ("rr", ["-e", "no/answer", "-m", "q"])])
def test_wait_timeout_exit_code_27(broker, tool, extra):
    args = ["-p", str(broker.port), "-t", "nothing", "-W", "1", *extra]
    ours, theirs = run(midge(tool, *args)), run(mosquitto(tool, *args))
    assert ours.returncode == theirs.returncode == 27
    assert ours.stderr == theirs.stderr == b"Timed out\n"


def test_exit_after_subscribe(broker):
    result = run(midge("sub", "-p", str(broker.port), "-t", "a", "-t", "b", "-E", "-d"))
    assert result.returncode == 0
    assert b"Subscribed (mid: 1): 0, 0\n" in result.stdout


def test_retained_only_and_remove_retained(broker):
    port = str(broker.port)
    for topic in ("rt/a", "rt/b"):
        assert run(mosquitto("pub", "-p", port, "-t", topic, "-m", topic, "-r")).returncode == 0
    result = run(midge("sub", "-p", port, "-t", "rt/#", "--remove-retained", "--retained-only", "-v", "-W", "2"))
    assert result.stdout in (b"rt/a rt/a\nrt/b rt/b\n", b"rt/b rt/b\nrt/a rt/a\n")
    # They were removed: nothing retained is left.
    result = run(midge("sub", "-p", port, "-t", "rt/#", "-W", "1", "--retained-only"))
    assert (result.returncode, result.stdout) == (27, b"")


def test_refused_connection_exit_code_is_connack_code(tmp_path):
    from tests.brokerproc import free_port, start_mosquitto

    port = free_port()
    broker = start_mosquitto(f"listener {port} 127.0.0.1\nallow_anonymous false\n", tmp_path, port)
    try:
        for tool, extra in (("sub", []), ("pub", ["-m", "x"]), ("rr", ["-e", "b", "-m", "x"])):
            for version, code in (("311", 5), ("5", 135)):
                if tool == "rr" and version == "311":
                    continue
                args = ["-p", str(port), "-t", "a", "-V", version, *extra]
                ours = run(midge(tool, *args))
                theirs = run(mosquitto(tool, *args))
                assert ours.returncode == theirs.returncode == code
                assert ours.stderr == theirs.stderr
    finally:
        broker.stop()


def test_subscriber_debug_trace_matches_mosquitto_sub(broker):
    port = str(broker.port)
    common = ["-p", port, "-t", "trace/#", "-q", "2", "-C", "3", "-d", "-V", "5"]
    theirs = start_subscriber(broker, mosquitto("sub", *common), "tracer")
    ours = start_subscriber(broker, midge("sub", *common), "tracer2")
    for qos in ("0", "1", "2"):  # QoS 2 last: a later message could overtake its PUBREL
        assert run(mosquitto("pub", "-p", port, "-t", "trace/x", "-m", "q" + qos, "-q", qos)).returncode == 0
    out_theirs, out_ours = finish(theirs)[1], finish(ours)[1]
    assert out_ours.replace(b"tracer2", b"tracer").splitlines() == out_theirs.splitlines()


def test_will_is_published_when_the_client_dies(broker):
    import signal

    port = str(broker.port)
    watcher = start_subscriber(broker, mosquitto("sub", "-p", port, "-t", "will/#", "-v", "-C", "1"), "watcher")
    mark = broker.mark()
    doomed = start_subscriber(broker, midge("sub", "-p", port, "-t", "nothing", "--will-topic", "will/doomed",
                                             "--will-payload", "gone", "--will-qos", "1"), "doomed")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    rc, out, err = finish(watcher)
    assert out == b"will/doomed gone\n"


@pytest.mark.parametrize("mode", ["-s", "-f", "-n", "-m", "--repeat"])
def test_publish_message_sources(broker, tmp_path, mode):
    port = str(broker.port)
    source = tmp_path / "message.bin"
    source.write_bytes(b"file\x00contents\nwith newline\n")
    args, stdin, expected = {
        "-s": (["-s"], b"all of\nstdin\n", [b"all of\nstdin\n"]),
        "-f": (["-f", str(source)], None, [source.read_bytes()]),
        "-n": (["-n"], None, [b""]),
        "-m": (["-m", "text", "-r"], None, [b"text"]),
        "--repeat": (["-m", "again", "--repeat", "3", "--repeat-delay", "0.01"], None, [b"again"] * 3),
    }[mode]
    sub = start_subscriber(broker, mosquitto("sub", "-p", port, "-t", "src", "-C", str(len(expected)),
                                             "-F", "%l:%x"), f"src{len(mode)}")
    result = run(midge("pub", "-p", port, "-t", "src", *args), input=stdin)
    assert result.returncode == 0, result.stderr
    rc, out, err = finish(sub)
    assert out == b"".join(b"%d:%s\n" % (len(e), e.hex().encode()) for e in expected)
    run(mosquitto("pub", "-p", port, "-t", "src", "-r", "-n"))


def test_rr_output_matches_mosquitto_rr(broker):
    port = str(broker.port)
    outputs = []
    for tool, ident in ((mosquitto, "rr-m"), (midge, "rr-g")):
        responder = start_subscriber(broker, mosquitto("sub", "-p", port, "-V", "5", "-t", f"svc/{ident}",
                                                       "-C", "1", "-F", "%R"), f"{ident}-responder")
        mark = broker.mark()
        from tests.client.tools import start
        requester = start(tool("rr", "-p", port, "-t", f"svc/{ident}", "-e", f"reply/{ident}", "-m", "q",
                               "-v", "-i", ident))
        reply_topic = finish(responder)[1].strip().decode()
        broker.wait_for_log(f"Sending SUBACK to {ident}", start=mark)
        assert run(mosquitto("pub", "-p", port, "-t", reply_topic, "-m", "answer", "-V", "5",
                             "-D", "publish", "user-property", "a", "b")).returncode == 0
        rc, out, err = finish(requester)
        assert rc == 0, err
        outputs.append(out.replace(ident.encode(), b"ID"))
    assert outputs[0] == outputs[1] == b"reply/ID answer\n"


def test_sigterm_disconnects_cleanly_without_will(broker):
    import signal

    port = str(broker.port)
    mark = broker.mark()
    proc = start_subscriber(broker, midge("sub", "-p", port, "-t", "x", "--will-topic", "will/never"), "quitter")
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0
    broker.wait_for_log("Received DISCONNECT from quitter", start=mark)


def test_unsubscribe_filter_out_and_no_retained(broker):
    port = str(broker.port)
    assert run(mosquitto("pub", "-p", port, "-t", "ft/old", "-m", "stale", "-r")).returncode == 0
    # -U removes a subscription made by an earlier persistent session.
    assert run(midge("sub", "-p", port, "-t", "gone/x", "-c", "-i", "filterer", "-E")).returncode == 0
    sub = start_subscriber(broker, midge("sub", "-p", port, "-t", "ft/#", "-T", "ft/skip/#", "-R", "-v",
                                         "-U", "gone/x", "-c", "-C", "2"), "filterer")
    for topic in ("gone/x", "ft/skip/a", "ft/keep", "ft/keep2"):
        assert run(mosquitto("pub", "-p", port, "-t", topic, "-m", topic, "-q", "1")).returncode == 0
    rc, out, err = finish(sub)
    assert (rc, out) == (0, b"ft/keep ft/keep\nft/keep2 ft/keep2\n"), err
    run(mosquitto("pub", "-p", port, "-t", "ft/old", "-r", "-n"))


def test_persistent_session_gets_queued_messages(broker):
    port = str(broker.port)
    args = ["-p", port, "-t", "ps/#", "-q", "1", "-c", "-i", "sleeper", "-V", "5"]
    assert run(midge("sub", *args, "-E")).returncode == 0
    assert run(mosquitto("pub", "-p", port, "-t", "ps/a", "-m", "while away", "-q", "1")).returncode == 0
    result = run(midge("sub", *args, "-C", "1"))
    assert (result.returncode, result.stdout) == (0, b"while away\n")
    run(midge("sub", "-p", port, "-t", "ps/#", "-i", "sleeper", "-E"))  # clean the session up


def test_bind_address(broker):
    result = run(midge("pub", "-p", str(broker.port), "-A", "127.0.0.1", "-t", "b", "-m", "x"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("flags", [["-R", "--retain-as-published", "-q", "1"], ["-q", "2", "-t", "second/+"]])
def test_subscribe_trace_matches_mosquitto_sub(broker, flags):
    args = ["-p", str(broker.port), "-t", "opts/#", "-V", "5", "-d", "-E", "-i", "optioner", *flags]
    ours, theirs = run(midge("sub", *args)), run(mosquitto("sub", *args))
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout


def test_mqtt_v31(broker):
    port = str(broker.port)
    sub = start_subscriber(broker, midge("sub", "-p", port, "-t", "v31/#", "-V", "31", "-C", "2", "-v"), "old-sub")
    assert run(mosquitto("pub", "-p", port, "-t", "v31/a", "-m", "one", "-V", "mqttv31")).returncode == 0
    result = run(midge("pub", "-p", port, "-t", "v31/b", "-m", "two", "-V", "mqttv31", "-q", "1"))
    assert result.returncode == 0, result.stderr
    rc, out, err = finish(sub)
    assert (rc, out) == (0, b"v31/a one\nv31/b two\n"), err


def test_closed_stdout_ends_quietly(broker):
    """`midge sub | head -1`: status 141 like mosquitto_sub killed by SIGPIPE, no traceback."""
    port = str(broker.port)
    sub = start_subscriber(broker, midge("sub", "-p", port, "-t", "pipe"), "piped")
    assert run(mosquitto("pub", "-p", port, "-t", "pipe", "-m", "first")).returncode == 0
    assert sub.stdout.readline() == b"first\n"
    sub.stdout.close()
    for _ in range(3):
        assert run(mosquitto("pub", "-p", port, "-t", "pipe", "-m", "more")).returncode == 0
    assert sub.wait(10) == 141
    assert sub.stderr.read() == b""


def test_topic_aliases_from_the_broker(broker):
    """With Topic Alias Maximum set, a broker may replace repeated topics by aliases
    (midge's does; Debian's mosquitto does not). The client prints the real topic.
    (mosquitto_sub 2.0.11 cannot: it drops the connection with a protocol error.)"""
    port = str(broker.port)
    ours = start_subscriber(broker, midge("sub", "-p", port, "-t", "alias/#", "-C", "3", "-F", "%t %p",
                                          "-D", "connect", "topic-alias-maximum", "5"), "alias-g")
    for payload in ("1", "2", "3"):
        assert run(mosquitto("pub", "-p", port, "-t", "alias/same/topic", "-m", payload)).returncode == 0
    rc, out, err = finish(ours)
    assert (rc, out) == (0, b"alias/same/topic 1\nalias/same/topic 2\nalias/same/topic 3\n"), err


def test_disconnect_properties_are_sent(broker):
    """`-D disconnect ...` reaches the DISCONNECT: a session expiry of 0 there ends the
    session that CONNECT's -x 60 kept (without it, the next connection finds it)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tests.clients import PahoClient

    keep = Properties(PacketTypes.CONNECT)
    keep.SessionExpiryInterval = 60
    for extra, session_present in (([], True), (["-D", "disconnect", "session-expiry-interval", "0"], False)):
        result = run(midge("sub", "-p", str(broker.port), "-V", "5", "-i", "dprops", "-x", "60",
                           "-t", "d/p", "-E", *extra))
        assert result.returncode == 0, result.stderr
        client = PahoClient(broker.port, "dprops", version=5, clean=False, properties=keep, connect=False)
        _, flags, reason, _ = client.connect()
        client.disconnect()
        assert (reason, flags.session_present) == (0, session_present), extra
