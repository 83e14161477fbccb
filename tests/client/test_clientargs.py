"""Flag parsing of midge pub/sub/rr: same defaults and refusals as mosquitto's clients."""

from __future__ import annotations

import subprocess

import pytest

from midge.cli.clientargs import (FLAGS, FLAGS_BY_TOOL, HelpRequested, UsageError, VersionRequested,
                                  help_text, parse, usage_flags, usage_text)
from midge.cli.clientconfig import PROPERTY_PACKETS
from midge.client.options import ClientOptions, TlsOptions
from midge.protocol.constants import Property
from tests.client.tools import midge, mosquitto, run


def parse_clean(tool, argv):
    return parse(tool, argv, use_defaults=False)


def test_defaults():
    cfg = parse_clean("pub", ["-t", "a", "-m", "x"])
    options = cfg.options
    assert (options.host, options.port, options.tls) == ("localhost", 1883, None)
    connect = cfg.connect_packet()
    assert (connect.protocol_version, connect.client_id, connect.keepalive, connect.clean_start) == (4, "", 60, True)
    assert parse_clean("rr", ["-t", "a", "-e", "b", "-m", "x"]).protocol_version == 5


def test_tls_flags_switch_port_to_8883():
    cfg = parse_clean("sub", ["-t", "a", "--cafile", "ca.crt"])
    assert cfg.options.port == 8883
    cfg = parse_clean("sub", ["-t", "a", "--psk", "0011", "--psk-identity", "me"])
    options = cfg.options
    assert (options.port, options.tls.psk, options.tls.psk_identity) == (8883, b"\x00\x11", "me")
    assert parse_clean("sub", ["-t", "a", "--cafile", "c", "-p", "1"]).options.port == 1


def test_url():
    cfg = parse_clean("pub", ["-L", "MQTTS://user:p%40ss@broker.example:1234/some/topic", "-m", "x"])
    assert (cfg.options.host, cfg.options.port, cfg.username, cfg.password, cfg.topics) == (
        "broker.example", 1234, "user", "p@ss", ["some/topic"])
    assert cfg.options.tls.use_os_certs
    cfg = parse_clean("sub", ["-L", "ws://[::1]/t"])
    assert (cfg.options.host, cfg.options.port, cfg.options.transport) == ("::1", 80, "websockets")
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
    connect = parse_clean("sub", ["-t", "a", "-V", "5", "-c", "-i", "me"]).connect_packet()
    assert connect.properties[Property.SESSION_EXPIRY_INTERVAL] == 0xFFFFFFFF
    assert not connect.clean_start
    connect = parse_clean("sub", ["-t", "a", "-V", "mqttv5", "-c", "-x", "60"]).connect_packet()
    assert connect.properties[Property.SESSION_EXPIRY_INTERVAL] == 60
    with pytest.raises(UsageError, match="client id if you are using the -c option"):
        parse_clean("sub", ["-t", "a", "-c"])
    with pytest.raises(UsageError, match="client id if you are using an infinite session expiry"):
        parse_clean("sub", ["-t", "a", "-V", "5", "-c", "-I", "prefix-"])
    assert Property.SESSION_EXPIRY_INTERVAL not in parse_clean(
        "sub", ["-t", "a", "-V", "5", "-x", "0"]).connect_packet().properties


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
    # long forms are named by their short form, -V by its long one
    ("pub", ["-t", "a", "-m", "x", "--topic"]),
    ("sub", ["-t", "a", "--id"]),
    ("sub", ["-t", "a", "-V"]),
    ("sub", ["-t", "a", "--cafile"]),
    ("sub", ["-t", "a", "-M"]),
    ("pub", ["-t", "a", "-m", "x", "-m", "y"]),
    ("pub", ["-t", "a", "-m", "x", "--message"]),
    ("sub", ["-t", "a", "-p", "65536"]),
    ("sub", ["-t", "a", "-k", "x"]),
    ("sub", ["-t", "a", "-U", "a/#b"]),
    ("sub", ["-L", "mqtt://localhost/a/#/b"]),
    ("pub", ["-t", "a\tb", "-m", "x"]),
    ("pub", ["-t", "a", "-m", "x", "-x", "4294967296"]),
    ("pub", ["-t", "a", "-m", "x", "-x", "1.5"]),
    ("sub", ["-t", "a", "-V", "5", "-c"]),
    ("rr", ["-t", "a", "-e", "b", "-m", "x", "-c"]),
    ("pub", ["-t", "a", "-m", "x", "--keyform", "x", "--key", "k", "--cert", "c"]),
    ("sub", ["-t", "a", "--proxy", "http://x"]),
    ("sub", ["-t", "a", "--proxy", "socks5h://"]),
    ("sub", ["-t", "a", "--proxy", "socks5h://h:0"]),
    # -D: names, packets and types come from protocol/properties.py
    ("sub", ["-t", "a", "-D", "publish"]),
    ("sub", ["-t", "a", "-D", "connect", "user-property", "k"]),
    ("sub", ["-t", "a", "-D", "bogus", "content-type", "x"]),
    ("sub", ["-t", "a", "-D", "publish", "bogus", "x"]),
    ("sub", ["-t", "a", "-D", "connect", "maximum-qos", "1"]),
    ("sub", ["-t", "a", "-D", "auth", "reason-string", "x"]),
    ("sub", ["-t", "a", "-D", "publish", "subscription-identifier", "3"]),
    ("sub", ["-t", "a", "-D", "publish", "message-expiry-interval", "-1"]),
    ("sub", ["-t", "a", "-D", "connect", "receive-maximum", "65536"]),
    ("sub", ["-t", "a", "-D", "connect", "receive-maximum", "0"]),
    ("sub", ["-t", "a", "-D", "publish", "content-type", "a", "-D", "publish", "content-type", "b"]),
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
    assert (cfg.options.host, cfg.topics) == ("mosquitto.example", ["from/mosquitto", "cli"])
    (tmp_path / "midge_sub").write_text("-h midge.example\n-v\n")
    cfg = parse("sub", ["-t", "cli", "-h", "override.example"])
    assert (cfg.options.host, cfg.topics, cfg.verbose) == ("override.example", ["cli"], True)


def test_port_8883_alone_means_tls_with_os_certificates():
    options = parse_clean("pub", ["-t", "a", "-m", "x", "-p", "8883"]).options
    assert options.tls is not None and options.tls.use_os_certs
    assert parse_clean("pub", ["-t", "a", "-m", "x", "-p", "1883"]).options.tls is None


def test_last_topic_wins_for_pub_and_rr():
    assert parse_clean("pub", ["-t", "a", "-t", "b", "-m", "x"]).topics == ["b"]
    assert parse_clean("rr", ["-t", "a", "-t", "b", "-e", "r", "-m", "x"]).topics == ["b"]
    assert parse_clean("sub", ["-t", "a", "-t", "b"]).topics == ["a", "b"]


FLAGS_TEXT = """-A -c --cafile --capath --cert --ciphers -C -d -D -e -E -f -F -h --insecure -i -I -k --key
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
    for flag in FLAGS_TEXT:
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


# Which tools take which flag, written out from mosquitto_pub/sub/rr 2.0's behaviour
# (not from FLAGS, so the table cannot agree with itself by construction).
ONLY = {
    "pub": {"-l", "--stdin-line", "-r", "--retain", "--repeat", "--repeat-delay"},
    "sub": {"-C", "-E", "-T", "--filter-out", "-U", "--unsubscribe", "--random-filter",
            "--remove-retained", "--retained-only"},
    "rr": {"-e"},
    "pub rr": {"-f", "--file", "-m", "--message", "-n", "--null-message", "-s", "--stdin-file"},
    "sub rr": {"-F", "-N", "-R", "-v", "--verbose", "-W", "--pretty", "--retain-as-published"},
}


def accepts(tool: str, flag: str) -> bool:
    try:
        parse_clean(tool, [flag])
    except UsageError as exc:
        return "Unknown option" not in str(exc)
    except (HelpRequested, VersionRequested):
        pass
    return True


@pytest.mark.parametrize("tool", ["pub", "sub", "rr"])
def test_each_tool_accepts_exactly_its_flags(tool):
    table_names = {name for flag in FLAGS for name in flag.names}
    # mosquitto 2.0's flags (-S and -o came later), no more and no fewer
    assert table_names == set(FLAGS_TEXT) - {"-S", "-o"} | {"--help", "--version"}
    for name in table_names | {"-S", "-o"}:
        expected = name in table_names
        for tools, names in ONLY.items():
            if name in names:
                expected = tool in tools.split()
        assert accepts(tool, name) == expected, name
    assert not accepts(tool, "--no-such-flag")


@pytest.mark.parametrize("tool", ["pub", "sub", "rr"])
def test_help_lists_every_flag_of_the_table(tool):
    text = help_text(tool)
    option_lines = [line for line in text.splitlines() if line.startswith(" -")]
    listed = {line.split(" : ")[0].strip() for line in option_lines}
    mine = {", ".join(flag.names) for flag in FLAGS if tool in flag.tools}
    assert listed == mine
    # and the usage lines name only flags this tool takes, each with the table's value name
    usage = usage_text(tool)
    for name in usage_flags(tool):
        flag = FLAGS_BY_TOOL[tool][name]
        assert (f"{name} {flag.arg}" if flag.arg else name) in usage
    for name in ("-t", "-p", "-h", "-D", "--cafile"):
        assert name in usage_flags(tool)


def test_help_and_usage_per_tool():
    assert " -l, --stdin-line : " in help_text("pub") and "-l" not in usage_flags("sub")
    for tool in ("sub", "rr"):
        assert " -R : " in help_text(tool) and " -N : " in help_text(tool)
        assert " -l, --stdin-line" not in help_text(tool) and " -r, --retain" not in help_text(tool)
    assert " -C : " in help_text("sub") and " -C : " not in help_text("rr")
    assert "[-C msg_count]" in usage_text("sub") and "-e response-topic" in usage_text("rr")


def test_property_names_and_types_come_from_the_protocol_table():
    from midge.protocol.properties import PROPERTY_SPECS

    samples = {"connect": ("session-expiry-interval", "30", 30), "will": ("will-delay-interval", "5", 5),
               "publish": ("correlation-data", "c0rr", b"c0rr"), "subscribe": ("subscription-identifier", "7", 7),
               "unsubscribe": ("user-property", "k", [("k", "v")]), "disconnect": ("reason-string", "bye", "bye")}
    for command, (name, text, value) in samples.items():
        argv = ["-t", "a", "-D", command, name, text] + (["v"] if name == "user-property" else [])
        cfg = parse_clean("sub", argv)
        ident = Property[name.upper().replace("-", "_")]
        assert cfg.properties[command] == {ident: value} and cfg.protocol_version == 5
    # every property the protocol table lets a client send is accepted on that packet
    for ident, (_, packets, _) in PROPERTY_SPECS.items():
        name = Property(ident).name.lower().replace("_", "-")
        for command, kind in PROPERTY_PACKETS.items():
            if kind in packets and not (command == "publish" and ident == Property.SUBSCRIPTION_IDENTIFIER):
                argv = ["-t", "a", "-D", command, name, "1"] + (["v"] if ident == Property.USER_PROPERTY else [])
                parse_clean("sub", argv)


def test_session_expiry_flag_reads_c_integers():
    def expiry(text):
        return parse_clean("sub", ["-t", "a", "-V", "5", "-i", "me", "-x", text]).session_expiry

    assert [expiry(t) for t in ("60", "0x10", "010", "-1", "4294967295", "∞")] == [
        60, 16, 8, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF]
    for bad in ("1.5", "08", "x", ""):
        with pytest.raises(UsageError, match="not a number"):
            expiry(bad)


def test_connection_settings_are_the_client_librarys_options():
    cfg = parse_clean("sub", ["-t", "a", "-h", "h", "-p", "1", "-A", "127.0.0.1", "--nodelay",
                              "--unix", "/s", "--proxy", "socks5h://p:2"])
    assert cfg.options == ClientOptions(host="h", port=1, unix_path="/s", bind_address="127.0.0.1",
                                        nodelay=True, proxy="socks5h://p:2")
    cfg = parse_clean("sub", ["-t", "a", "--cafile", "ca", "--cert", "c", "--key", "k", "--insecure",
                              "--tls-alpn", "x", "--tls-alpn", "y", "--tls-version", "tlsv1.3"])
    assert cfg.options.tls == TlsOptions(cafile="ca", certfile="c", keyfile="k", insecure=True,
                                         alpn=["x", "y"], min_version="tlsv1.3")
    assert parse_clean("sub", ["-t", "a", "--tls-use-os-certs"]).options.tls.use_os_certs
