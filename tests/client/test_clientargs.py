"""Flag parsing of midge pub/sub/rr: same defaults and refusals as mosquitto's clients."""

from __future__ import annotations

import subprocess

import pytest

from midge.cli.clientargs import HelpRequested, UsageError, parse
from midge.protocol.constants import Property
from tests.client.tools import midge, mosquitto, run


def parse_clean(tool, argv):
    return parse(tool, argv, use_defaults=False)


def test_defaults():
    cfg = parse_clean("pub", ["-t", "a", "-m", "x"])
    options = cfg.client_options()
    assert (options.host, options.port, options.tls) == ("localhost", 1883, None)
    connect = cfg.connect_packet()
    assert (connect.protocol_version, connect.client_id, connect.keepalive, connect.clean_start) == (4, "", 60, True)
    assert parse_clean("rr", ["-t", "a", "-e", "b", "-m", "x"]).protocol_version == 5


def test_tls_flags_switch_port_to_8883():
    cfg = parse_clean("sub", ["-t", "a", "--cafile", "ca.crt"])
    assert cfg.client_options().port == 8883
    cfg = parse_clean("sub", ["-t", "a", "--psk", "0011", "--psk-identity", "me"])
    options = cfg.client_options()
    assert (options.port, options.tls.psk, options.tls.psk_identity) == (8883, b"\x00\x11", "me")
    assert parse_clean("sub", ["-t", "a", "--cafile", "c", "-p", "1"]).client_options().port == 1


def test_url():
    cfg = parse_clean("pub", ["-L", "MQTTS://user:p%40ss@broker.example:1234/some/topic", "-m", "x"])
    assert (cfg.host, cfg.port, cfg.username, cfg.password, cfg.topics) == (
        "broker.example", 1234, "user", "p@ss", ["some/topic"])
    assert cfg.use_os_certs
    cfg = parse_clean("sub", ["-L", "ws://[::1]/t"])
    assert (cfg.host, cfg.port, cfg.transport) == ("::1", 80, "websockets")
    with pytest.raises(UsageError, match="unsupported URL scheme"):
        parse_clean("pub", ["-L", "http://x/y", "-m", "x"])
    with pytest.raises(UsageError, match="topic missing"):
        parse_clean("pub", ["-L", "mqtt://x", "-m", "x"])


def test_properties_force_v5_and_land_on_their_packet():
    cfg = parse_clean("pub", ["-t", "a", "-m", "x", "-D", "publish", "user-property", "k", "v",
                              "-D", "connect", "session-expiry-interval", "30",
                              "-D", "will", "content-type", "text/plain", "--will-topic", "w"])
    assert cfg.protocol_version == 5
    assert cfg.properties["publish"] == {Property.USER_PROPERTY: [("k", "v")]}
    connect = cfg.connect_packet()
    assert connect.properties == {Property.SESSION_EXPIRY_INTERVAL: 30}
    assert connect.will.properties == {Property.CONTENT_TYPE: "text/plain"}


def test_session_expiry_and_clean_session():
    connect = parse_clean("sub", ["-t", "a", "-V", "5", "-c"]).connect_packet()
    assert connect.properties[Property.SESSION_EXPIRY_INTERVAL] == 0xFFFFFFFF
    assert not connect.clean_start
    connect = parse_clean("sub", ["-t", "a", "-V", "mqttv5", "-c", "-x", "60"]).connect_packet()
    assert connect.properties[Property.SESSION_EXPIRY_INTERVAL] == 60
    with pytest.raises(UsageError, match="client id"):
        parse_clean("sub", ["-t", "a", "-c"])


def test_small_message_count_sets_receive_maximum():
    connect = parse_clean("sub", ["-t", "a", "-V", "5", "-C", "3"]).connect_packet()
    assert connect.properties[Property.RECEIVE_MAXIMUM] == 3


def test_v31_makes_up_a_client_id():
    connect = parse_clean("pub", ["-t", "a", "-m", "x", "-V", "31"]).connect_packet()
    assert connect.protocol_name == "MQIsdp"
    assert connect.client_id.startswith("mosq-") and len(connect.client_id) == 23


def test_id_prefix_appends_pid(monkeypatch):
    monkeypatch.setattr("os.getpid", lambda: 4242)
    assert parse_clean("pub", ["-t", "a", "-m", "x", "-I", "pre-"]).connect_packet().client_id == "pre-4242"


def test_help():
    with pytest.raises(HelpRequested):
        parse_clean("sub", ["--help"])


@pytest.mark.parametrize("tool,argv,message", [
    ("pub", ["-t", "a", "-m", "x", "-C", "3"], "Unknown option '-C'"),
    ("sub", ["-t", "a", "-m", "x"], "Unknown option '-m'"),
    ("pub", ["-t", "a/#", "-m", "x"], "Invalid publish topic"),
    ("sub", ["-t", "a/#/b"], "Invalid subscription topic"),
    ("pub", ["-t", "a", "-m", "x", "-l"], "Only one type of message"),
    ("pub", ["-t", "a", "-m", "x", "-q", "3"], "Invalid QoS given: 3"),
    ("sub", ["-t", "a", "-F", "%Z"], "Invalid format specifier 'Z'"),
    ("pub", ["-t", "a", "-m", "x", "--cert", "c"], "Both certfile and keyfile"),
    ("pub", ["-t", "a", "-m", "x", "--psk", "00", "--cafile", "c", "--psk-identity", "i"], "Only one of --psk"),
    ("pub", ["-t", "a", "-m", "x", "-p"], "-p argument given but no port specified"),
])
def test_refusals(tool, argv, message):
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        parse_clean(tool, argv)


@pytest.mark.parametrize("tool,argv", [
    ("pub", ["-t", "a", "-m", "x", "-q", "3"]),
    ("pub", ["-t", "a/+", "-m", "x"]),
    ("pub", ["-t", "a"]),
    ("pub", ["--nope"]),
    ("pub", ["-t", "a", "-m", "x", "-k", "2"]),
    ("pub", ["-t", "a", "-m", "x", "-i", "a", "-I", "b"]),
    ("pub", ["-t", "a", "-m", "x", "--will-retain"]),
    ("pub", ["-t", "a", "-m", "x", "-D", "connect", "content-type", "x"]),
    ("sub", []),
    ("sub", ["-t", "a", "-C", "0"]),
    ("sub", ["-t", "a", "-F", "\\q"]),
    ("sub", ["-t", "a", "-T", "a/#b"]),
    ("rr", ["-t", "a", "-e", "b"]),
    ("rr", ["-t", "a", "-e", "b/#", "-m", "x"]),
    ("rr", ["-t", "a/#", "-e", "b", "-m", "x"]),
    ("pub", ["-t", "a", "-m", "x", "-P", "secret"]),
    ("pub", ["-t", "a", "-m", "x", "-p"]),
    ("pub", ["-t", "a", "-m", "x", "-M", "0"]),
    ("pub", ["-t", "a", "-m", "x", "-x", "abc"]),
    ("pub", ["-t", "a", "-m", "x", "--tls-version", "x"]),
    ("pub", ["-t", "a", "-m", "x", "--keyform", "x"]),
    ("pub", ["-t", "a", "-m", "x", "--will-topic", "a/#"]),
    ("pub", ["-t", "a", "-m", "x", "--will-payload", "x"]),
    ("pub", ["-L", "foo://a/b", "-m", "x"]),
    ("pub", ["-L", "mqtt://a", "-m", "x"]),
    ("sub", ["-t", "a", "-W", "0"]),
    ("sub", ["-t", "a", "--random-filter", "0"]),
    ("pub", ["-t", "a", "-m", "y", "-l"]),
    ("pub", ["-t", "a", "-f", "/nonexistent/file", "-p", "1"]),
])
def test_errors_like_mosquitto(tool, argv, tmp_path):
    """Same exit status and the same first error line as the mosquitto tool."""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ours = run(midge(tool, *argv), env=env)
    theirs = run(mosquitto(tool, *argv), env=env)
    assert ours.returncode == theirs.returncode == 1
    first = lambda out: out.splitlines()[0] if out else b""  # noqa: E731
    assert first(ours.stderr) == first(theirs.stderr)
    mosquitto_name = f"mosquitto_{tool}".encode()
    assert ours.stderr.replace(f"midge {tool}".encode(), mosquitto_name) == theirs.stderr
    assert bool(ours.stdout) == bool(theirs.stdout)  # the help text, when mosquitto prints it


def test_defaults_file_midge_first_then_mosquitto(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "mosquitto_sub").write_text("# comment\n-h mosquitto.example\n-t from/mosquitto\n")
    cfg = parse("sub", ["-t", "cli"])
    assert (cfg.host, cfg.topics) == ("mosquitto.example", ["from/mosquitto", "cli"])
    (tmp_path / "midge_sub").write_text("-h midge.example\n-v\n")
    cfg = parse("sub", ["-t", "cli", "-h", "override.example"])
    assert (cfg.host, cfg.topics, cfg.verbose) == ("override.example", ["cli"], True)


def test_port_8883_alone_means_tls_with_os_certificates():
    options = parse_clean("pub", ["-t", "a", "-m", "x", "-p", "8883"]).client_options()
    assert options.tls is not None and options.tls.use_os_certs
    assert parse_clean("pub", ["-t", "a", "-m", "x", "-p", "1883"]).client_options().tls is None


def test_last_topic_wins_for_pub_and_rr():
    assert parse_clean("pub", ["-t", "a", "-t", "b", "-m", "x"]).topics == ["b"]
    assert parse_clean("rr", ["-t", "a", "-t", "b", "-e", "r", "-m", "x"]).topics == ["b"]
    assert parse_clean("sub", ["-t", "a", "-t", "b"]).topics == ["a", "b"]


FLAGS = """-A -c --cafile --capath --cert --ciphers -C -d -D -e -E -f -F -h --insecure -i -I -k --key
--keyform -L -l -m -M -n -N --nodelay -p -P --pretty --proxy --psk --psk-identity -q --quiet -r -R
--random-filter --remove-retained --repeat --repeat-delay --retain-as-published --retained-only -s -S
-t -T --tls-alpn --tls-engine --tls-engine-kpass-sha1 --tls-use-os-certs --tls-version -U -u --unix
-v -V -W --will-payload --will-qos --will-retain --will-topic -x -o --id --id-prefix --keepalive
--url --message --file --null-message --stdin-line --stdin-file --topic --filter-out --unsubscribe
--username --pw --protocol-version --qos --retain --verbose --debug --host --port --property
--disable-clean-session""".split()


@pytest.mark.parametrize("tool", ["pub", "sub", "rr"])
def test_same_flags_known_as_mosquitto(tool, tmp_path):
    """Every flag one tool knows, the other knows too (mosquitto's run in a few ms each)."""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    differences = []
    for flag in FLAGS:
        theirs = subprocess.run(mosquitto(tool, flag), capture_output=True, env=env, timeout=5, stdin=subprocess.DEVNULL)
        theirs_unknown = b"Unknown option" in theirs.stderr
        try:
            parse_clean(tool, [flag])
            ours_unknown = False
        except UsageError as exc:
            ours_unknown = "Unknown option" in str(exc)
        except HelpRequested:
            ours_unknown = False
        if ours_unknown != theirs_unknown:
            differences.append(flag)
    assert differences == []
