"""Flags of `midge pub`, `midge sub` and `midge rr` (mosquitto_pub/sub/rr 2.0).

`FLAGS` is the one table of flags: each `Flag` says which tools accept it, what value
it takes, which `ClientConfig` field it sets, how its value is checked and what the
help says. The parser, the usage lines and the help text are all read from it.

`parse(tool, argv)` reads the defaults file, then `argv`, then checks the result
the way mosquitto's `client_config_load` does, and returns a `ClientConfig` or
raises `UsageError` (message printed, exit 1). `HelpRequested` means `--help`.
Error messages are worded as mosquitto's, so scripts and habits carry over; where
mosquitto quietly takes a bad value (atoi("x") is 0, an empty topic, a property
value MQTT forbids), midge refuses it with the message of that flag.

Defaults file: midge reads `$XDG_CONFIG_HOME/midge_pub` (or `~/.config/midge_pub`)
when it exists, otherwise Mosquitto's `mosquitto_pub` in the same place, so an
existing setup keeps working and midge can have its own. Only one file is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from midge.cli.clientconfig import NEVER_EXPIRES, PROPERTY_PACKETS, ClientConfig
from midge.protocol.constants import PacketType, Property
from midge.protocol.errors import MalformedPacket
from midge.protocol.properties import (BINARY, BYTE, FOUR_BYTE, PROPERTY_SPECS, STRING, TWO_BYTE,
                                       VARINT, WILL, check_string)
from midge.protocol.topics import valid_topic_filter, valid_topic_name

TOOLS = ("pub", "sub", "rr")


class UsageError(Exception):
    """Bad flags: print `str()` (already starting with "Error: ") and exit 1."""

    def __init__(self, message: str, show_usage: bool = False, hint: bool = True,
                 blank_lines: int | None = None):
        super().__init__(message)
        self.show_usage = show_usage
        self.hint = hint  # add "Use 'midge pub --help' to see usage."
        # mosquitto leaves two blank lines after most flag errors, one after topic
        # errors and whole-configuration checks; None means "decide by where raised".
        self.blank_lines = blank_lines


class HelpRequested(Exception):
    """`--help` was given."""


class VersionRequested(Exception):
    """`--version` was given."""


# -- the flag table ------------------------------------------------------------

ALL = frozenset(TOOLS)
PUB, SUB, RR = frozenset({"pub"}), frozenset({"sub"}), frozenset({"rr"})
PUB_RR, SUB_RR = frozenset({"pub", "rr"}), frozenset({"sub", "rr"})


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag. `names[0]` is how help and errors name it; the others are aliases."""

    names: tuple[str, ...]
    tools: frozenset
    help: str | dict  # text (lines after the first are indented), or {tool: text}
    arg: str | None = None  # what the usage line calls its value; None: takes no value
    noun: str | None = None  # "Error: -h argument given but no <noun> specified." (default: arg)
    missing: str | None = None  # that whole message, where mosquitto words it differently
    field: str | None = None  # dotted ClientConfig attribute it sets ("options.tls.cafile")
    convert: Callable | None = None  # value text -> field value; raises UsageError
    const: object = True  # what a flag without a value stores in `field`
    action: Callable | None = None  # (parser, flag) when a flag does more than set one field

    @property
    def name(self) -> str:
        return self.names[0]

    def help_for(self, tool: str) -> str:
        return self.help[tool] if isinstance(self.help, dict) else self.help

    def missing_message(self) -> str:
        return "Error: " + (self.missing or f"{self.name} argument given but no {self.noun or self.arg} specified.")


def _integer(low: int, high: int, error: str, blank_lines: int = 2) -> Callable[[str], int]:
    """Converter for a whole number in [low, high]; `error` may show it as {}."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError("Error: " + error.format(text), blank_lines=blank_lines) from None
        if not low <= value <= high:
            raise UsageError("Error: " + error.format(value), blank_lines=blank_lines)
        return value
    return convert


def _repeat_delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also refuses nan
        raise UsageError("Error: --repeat-delay argument must be >=0.0.")
    return value


def _random_filter(text: str) -> int:
    """Per ten thousand; mosquitto_sub takes anything above 100 as 100."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.1:
        raise UsageError("Error: --random-filter chance must be between 0.1-100.0")
    return min(int(value * 100), 10000)


_C_INTEGER = re.compile(r"\s*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _session_expiry(text: str) -> int:
    """-x: a C integer (strtol base 0: 0x1F, 017, 15), -1 or ∞ for "never expires"."""
    if text == "∞":
        return NEVER_EXPIRES
    if not _C_INTEGER.fullmatch(text):
        raise UsageError("Error: session-expiry-interval not a number.")
    digits = text.strip()
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") and len(digits) > 1 else 10
    value = sign * int(digits, base)
    if not -1 <= value <= NEVER_EXPIRES:
        raise UsageError("Error: session-expiry-interval out of range.")
    return NEVER_EXPIRES if value == -1 else value


def _valid_utf8(text: str) -> bool:
    """What mosquitto_validate_utf8 accepts (the broker's own rule for strings)."""
    try:
        text.encode()
        check_string(text, "argument")
    except (UnicodeEncodeError, MalformedPacket):
        return False
    return True


def _topic(text: str, flag: str, kind: str, subscribe: bool) -> str:
    """Check a topic name or filter given to `flag` as the broker would."""
    if not _valid_utf8(text):
        raise UsageError(f"Error: Malformed UTF-8 in {flag} argument.")
    if subscribe:
        if not valid_topic_filter(text):
            raise UsageError(f"Error: Invalid {kind} '{text}', are all '+' and '#' wildcards correct?",
                             blank_lines=1)
    elif not valid_topic_name(text):
        raise UsageError(f"Error: Invalid {kind} '{text}', does it contain '+' or '#'?", blank_lines=1)
    return text


def _add_topic(cfg: ClientConfig, topic: str, flag: str) -> None:
    """-t and the topic of -L: sub subscribes to every one, pub and rr use the last."""
    if cfg.tool == "sub":
        cfg.topics.append(_topic(topic, flag, "subscription topic", subscribe=True))
    else:
        cfg.topics = [_topic(topic, flag, "publish topic", subscribe=False)]


# -- actions: flags that do more than set one field --

def _topic_flag(p: _Parser, flag: Flag) -> None:
    _add_topic(p.cfg, p.take(flag), flag.name)


def _message_flag(mode: str) -> Callable:
    """-m, -f, -s, -l, -n: one message source only (mosquitto checks that first)."""
    def action(p: _Parser, flag: Flag) -> None:
        if p.cfg.message_mode is not None:
            raise UsageError("Error: Only one type of message can be sent at once.")
        p.cfg.message_mode = mode
        if flag.arg is not None:
            p.store(flag)
    return action


def _client_id_flag(p: _Parser, flag: Flag) -> None:
    """-i and -I exclude each other (checked before the value, as mosquitto does)."""
    if p.cfg.given & {"-i", "-I"} - {flag.name}:
        raise UsageError("Error: -i and -I argument cannot be used together.")
    p.store(flag)


def _format(text: str) -> str:
    from midge.cli.output import check_format

    error = check_format(text)
    if error:
        raise UsageError(f"Error: {error}", blank_lines=1)
    return text


def _proxy(url: str) -> str:
    from midge.client.socks import ProxyError, parse_proxy_url

    try:
        parse_proxy_url(url)
    except ProxyError as exc:
        raise UsageError(f"Error: {exc}", blank_lines=1) from None
    return url


def _psk(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"Error: Invalid PSK '{text}': hexadecimal digits expected.") from None


def _protocol_version(text: str) -> int:
    versions = {"mqttv31": 3, "31": 3, "mqttv311": 4, "311": 4, "mqttv5": 5, "5": 5}
    if text not in versions:
        raise UsageError("Error: Invalid protocol version argument given.")
    return versions[text]


URL_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


def _url_flag(p: _Parser, flag: Flag) -> None:
    """-L mqtt(s)|ws(s)://[user[:password]@]host[:port]/topic"""
    cfg, options = p.cfg, p.cfg.options
    scheme, sep, rest = p.take(flag).partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in URL_PORTS:
        raise UsageError("Error: unsupported URL scheme.")
    authority, slash, topic = rest.partition("/")
    if not slash or not topic:
        raise UsageError("Error: Invalid URL for -L argument specified - topic missing.", blank_lines=1)
    _add_topic(cfg, topic, "-L topic")
    if "@" in authority:
        credentials, _, authority = authority.rpartition("@")
        user, colon, password = credentials.partition(":")
        cfg.username = unquote(user)
        if colon:
            cfg.password = unquote(password)
    if authority.startswith("["):  # midge accepts [v6]:port; mosquitto cannot
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = authority.partition(":")
    options.host = host
    options.port = _PORT(port_text) if port_text else URL_PORTS[scheme]
    if scheme in ("mqtts", "wss"):
        options.tls.use_os_certs = True
    if scheme in ("ws", "wss"):
        options.transport = "websockets"


_PROPERTY_BY_NAME = {prop.name.lower().replace("_", "-"): prop for prop in Property}
_COMMANDS = {**{kind.name.lower(): kind for kind in PacketType}, "will": WILL}
_INT_LIMITS = {BYTE: 0xFF, TWO_BYTE: 0xFFFF, FOUR_BYTE: 0xFFFFFFFF, VARINT: 268_435_455}


def _property_flag(p: _Parser, flag: Flag) -> None:
    """-D command identifier value: names, packets and types from protocol/properties.py."""
    if p.left() < 3:
        raise UsageError(flag.missing_message())
    command, name = p.take(flag), p.take(flag)
    kind = _COMMANDS.get(command)
    if kind is None:
        raise UsageError("Error: Invalid command given in --property argument.")
    ident = _PROPERTY_BY_NAME.get(name)
    if ident is None:
        raise UsageError("Error: Invalid property name given in --property argument.")
    wire_type, packets, check = PROPERTY_SPECS[ident]
    if kind not in packets:
        raise UsageError(f"Error: {name} property not allowed for {command} in --property argument.")
    if command not in PROPERTY_PACKETS or (kind == PacketType.PUBLISH and ident == Property.SUBSCRIPTION_IDENTIFIER):
        # a packet this client never sends, or a property only a server may send in it
        raise UsageError(f"Error: {name} property not supported for {command} in --property argument.")
    where = "Will" if kind == WILL else command.upper()
    props = p.cfg.properties[command]
    if ident == Property.USER_PROPERTY:
        key = p.take(flag)
        text = p.take(flag)
        if not (_valid_utf8(key) and _valid_utf8(text)):
            raise UsageError("Error: Malformed UTF-8 in --property argument.")
        props.setdefault(ident, []).append((key, text))
    else:
        text = p.take(flag)
        if wire_type in _INT_LIMITS:
            try:
                value = int(text)
            except ValueError:
                value = -1
            if not 0 <= value <= _INT_LIMITS[wire_type]:
                raise UsageError(f"Error: Property value ({text}) out of range for property {name}.")
        elif len(os.fsencode(text)) > 0xFFFF:
            raise UsageError(f"Error: Property value too long for property {name}.")
        elif wire_type == BINARY:
            value = os.fsencode(text)
        else:
            if wire_type == STRING and not _valid_utf8(text):
                raise UsageError("Error: Malformed UTF-8 in --property argument.")
            value = text
        if ident in props:
            raise UsageError(f"Error in {where} properties: Duplicate property in property list",
                             blank_lines=1)
        if check is not None and check(value) is not None:
            raise UsageError(f"Error in {where} properties: A network protocol error occurred "
                             "when communicating with the broker.", blank_lines=1)
        props[ident] = value
    p.cfg.protocol_version = 5  # properties need MQTT v5


def _help_flag(p: _Parser, flag: Flag) -> None:
    raise HelpRequested()


def _version_flag(p: _Parser, flag: Flag) -> None:
    raise VersionRequested()


_PORT = _integer(1, 65535, "Invalid port given: {}", blank_lines=1)
_QOS = _integer(0, 2, "Invalid QoS given: {}", blank_lines=1)

FLAGS: tuple[Flag, ...] = (
    Flag(("-A",), ALL, "bind the outgoing socket to this host/ip address. Use to control which interface\n"
         "the client communicates over.", arg="bind_address", noun="address", field="options.bind_address"),
    Flag(("-c", "--disable-clean-session"), ALL,
         "disable clean session/enable persistent client mode\n"
         "When this argument is used, the broker will be instructed not to clean existing sessions\n"
         "for the same client id when the client connects, and sessions will never expire when the\n"
         "client disconnects. MQTT v5 clients can change their session expiry interval with the -x\n"
         "argument.", field="clean_session", const=False),
    Flag(("-C",), SUB, "disconnect and exit after receiving the 'msg_count' messages.",
         arg="msg_count", noun="count", field="msg_count",
         convert=_integer(1, 2**31 - 1, 'Invalid message count "{}".')),
    Flag(("-d", "--debug"), ALL, "enable debug messages.", field="debug"),
    Flag(("-D", "--property"), ALL, "Define MQTT v5 properties: -D command identifier value, e.g.\n"
         "-D publish user-property key value, -D connect session-expiry-interval 60.\n"
         "Implies -V 5.", arg="command identifier value",
         missing="--property argument given but not enough arguments specified.", action=_property_flag),
    Flag(("-e",), RR, "Response topic. The client will subscribe to this topic to wait for a response.",
         arg="response-topic", noun="response topic", field="response_topic",
         convert=lambda text: _topic(text, "-e", "response topic", subscribe=False)),
    Flag(("-E",), SUB, "Exit once all subscriptions have been acknowledged by the broker.",
         field="exit_after_sub"),
    Flag(("-f", "--file"), PUB_RR, "send the contents of a file as the message.", arg="file",
         field="file", action=_message_flag("f")),
    Flag(("-F",), SUB_RR, "output format: %t topic, %p payload, %j/%J JSON, %x hex, @H strftime, ...\n"
         "(see mosquitto_sub(1)).", arg="format", field="format", convert=_format),
    Flag(("-h", "--host"), ALL, "mqtt host to connect to. Defaults to localhost.", arg="host",
         field="options.host"),
    Flag(("-i", "--id"), ALL, "id to use for this client. Defaults to an id assigned by the broker.",
         arg="id", field="client_id", action=_client_id_flag),
    Flag(("-I", "--id-prefix"), ALL, "define the client id as id_prefix appended with the process id. Useful for when the\n"
         "broker is using the clientid_prefixes option.", arg="id_prefix", noun="id prefix",
         field="id_prefix", action=_client_id_flag),
    Flag(("-k", "--keepalive"), ALL, "keep alive in seconds for this client. Defaults to 60.",
         arg="keepalive", field="keepalive",
         convert=_integer(5, 65535, "Invalid keepalive given, it must be between 5 and 65535 inclusive.")),
    Flag(("-L", "--url"), ALL, "specify user, password, hostname, port and topic as a URL in the form:\n"
         "mqtt(s)://[username[:password]@]host[:port]/topic, or ws(s)://... for MQTT over WebSocket.",
         arg="URL", action=_url_flag),
    Flag(("-l", "--stdin-line"), PUB, "read messages from stdin, sending a separate message for each line.",
         action=_message_flag("l")),
    Flag(("-m", "--message"), PUB_RR, "message payload to send.", arg="message", field="message",
         convert=os.fsencode, action=_message_flag("m")),
    Flag(("-M",), ALL, "the maximum inflight messages for QoS 1/2. Defaults to 20.", arg="max_inflight",
         missing="-M argument given but max_inflight not specified.", field="max_inflight",
         convert=_integer(1, 2**31 - 1, "Maximum inflight messages must be greater than 0.")),
    Flag(("-n", "--null-message"), PUB_RR, "send a null (zero length) message.", action=_message_flag("n")),
    Flag(("-N",), SUB_RR, "do not add an end of line character when printing the payload.",
         field="eol", const=False),
    Flag(("-p", "--port"), ALL, "network port to connect to. Defaults to 1883 for plain MQTT and 8883 for MQTT over TLS.",
         arg="port", field="options.port", convert=_PORT),
    Flag(("-P", "--pw"), ALL, "provide a password", arg="password", field="password"),
    Flag(("-q", "--qos"), ALL, {"pub": "quality of service level to use for all messages. Defaults to 0.",
                                "sub": "quality of service level to use for the subscription. Defaults to 0.",
                                "rr": "quality of service level to use for communications. Defaults to 0."},
         arg="qos", noun="QoS", field="qos", convert=_QOS),
    Flag(("-r", "--retain"), PUB, "message should be retained.", field="retain"),
    Flag(("-R",), SUB_RR, "do not print stale messages (those with retain set).", field="no_retain"),
    Flag(("-s", "--stdin-file"), PUB_RR, "read message from stdin, sending the entire input as a message.",
         action=_message_flag("s")),
    Flag(("-t", "--topic"), ALL, {"pub": "mqtt topic to publish to.",
                                  "sub": "mqtt topic to subscribe to. May be repeated multiple times.",
                                  "rr": "topic where the request message will be sent."},
         arg="topic", action=_topic_flag),
    Flag(("-T", "--filter-out"), SUB, "topic string to filter out of results. May be repeated.",
         arg="filter_out", noun="topic filter", field="filter_outs+",
         convert=lambda text: _topic(text, "-T", "filter topic", subscribe=True)),
    Flag(("-u", "--username"), ALL, "provide a username", arg="username", field="username"),
    Flag(("-U", "--unsubscribe"), SUB, "unsubscribe from a topic. May be repeated.", arg="topic",
         noun="unsubscribe topic", field="unsub_topics+",
         convert=lambda text: _topic(text, "-U", "unsubscribe topic", subscribe=True)),
    Flag(("-v", "--verbose"), SUB_RR, {"sub": "print published messages verbosely.",
                                       "rr": "print received messages verbosely."}, field="verbose"),
    Flag(("-V", "--protocol-version"), ALL,
         {"pub": "specify the version of the MQTT protocol to use when connecting.\n"
                 "Can be mqttv5, mqttv311 or mqttv31. Defaults to mqttv311.",
          "sub": "specify the version of the MQTT protocol to use when connecting.\n"
                 "Can be mqttv5, mqttv311 or mqttv31. Defaults to mqttv311.",
          "rr": "specify the version of the MQTT protocol to use when connecting.\n"
                "Defaults to 5 (midge rr needs it: the response topic is an MQTT v5 property)."},
         arg="protocol-version", missing="--protocol-version argument given but no version specified.",
         field="protocol_version", convert=_protocol_version),
    Flag(("-W",), SUB_RR, {"sub": "Specifies a timeout in seconds how long to process incoming MQTT messages.",
                           "rr": "Specifies a timeout in seconds how long to wait for a response."},
         arg="timeout_secs", noun="timeout", field="timeout",
         convert=_integer(1, 2**31 - 1, 'Invalid timeout "{}".')),
    Flag(("-x",), ALL, "Set the session-expiry-interval property on the CONNECT packet. Applies to MQTT v5\n"
         "clients only. Set to 0-4294967294 to specify the session will expire in that many\n"
         "seconds after the client disconnects, or use -1, 4294967295, or ∞ for a session\n"
         "that does not expire. Defaults to -1 if -c is also given, or 0 if -c not given.",
         arg="session-expiry", noun="session expiry interval", field="session_expiry",
         convert=_session_expiry),
    Flag(("--help",), ALL, "display this message.", action=_help_flag),
    Flag(("--version",), ALL, "display the version.", action=_version_flag),
    Flag(("--nodelay",), ALL, "disable Nagle's algorithm, to reduce socket sending latency at the possible\n"
         "expense of more packets being sent.", field="options.nodelay"),
    Flag(("--pretty",), SUB_RR, "print formatted output rather than minimised output when using the\n"
         "JSON output format option.", field="pretty"),
    Flag(("--quiet",), ALL, "don't print error messages.", field="quiet"),
    Flag(("--random-filter",), SUB, "only print a percentage of received messages. Set to 100 to have all\n"
         "messages printed, 50.0 to have half of the messages received on average\n"
         "printed, and so on.", arg="chance", field="random_filter", convert=_random_filter),
    Flag(("--remove-retained",), SUB, "send a message to the server to clear any received retained messages\n"
         "Use -T to filter out messages you do not want to be cleared.", field="remove_retained"),
    Flag(("--repeat",), PUB, "if publish mode is -f, -m, -n or -s, then repeat the publish N times.",
         arg="N", noun="count", field="repeat", convert=_integer(1, 2**31 - 1, "--repeat argument must be >0.")),
    Flag(("--repeat-delay",), PUB, "if using --repeat, wait time seconds between publishes. Defaults to 0.",
         arg="time", field="repeat_delay", convert=_repeat_delay),
    Flag(("--retain-as-published",), SUB_RR, "MQTT v5: ask the broker to keep the retain flag of each message\n"
         "as it was published.", field="retain_as_published"),
    Flag(("--retained-only",), SUB, "only handle messages with the retained flag set, and exit when the\n"
         "first non-retained message is received.", field="retained_only"),
    Flag(("--unix",), ALL, "connect to a broker through a unix domain socket instead of a TCP socket,\n"
         "e.g. /tmp/mosquitto.sock", arg="path", noun="socket path", field="options.unix_path"),
    Flag(("--will-payload",), ALL, "payload for the client Will, which is sent by the broker in case of\n"
         "unexpected disconnection. If not given and will-topic is set, a zero\n"
         "length message will be sent.", arg="payload", noun="will payload", field="will_payload",
         convert=os.fsencode),
    Flag(("--will-qos",), ALL, "QoS level for the client Will.", arg="qos", noun="will QoS", field="will_qos",
         convert=_integer(0, 2, "Invalid will QoS {}.")),
    Flag(("--will-retain",), ALL, "if given, make the client Will retained.", field="will_retain"),
    Flag(("--will-topic",), ALL, "the topic on which to publish the client Will.", arg="topic",
         noun="will topic", field="will_topic",
         convert=lambda text: _topic(text, "--will-topic", "will topic", subscribe=False)),
    Flag(("--cafile",), ALL, "path to a file containing trusted CA certificates to enable encrypted\n"
         "communication.", arg="file", field="options.tls.cafile"),
    Flag(("--capath",), ALL, "path to a directory containing trusted CA certificates to enable encrypted\n"
         "communication.", arg="dir", noun="directory", field="options.tls.capath"),
    Flag(("--cert",), ALL, "client certificate for authentication, if required by server.", arg="file",
         field="options.tls.certfile"),
    Flag(("--key",), ALL, "client private key for authentication, if required by server.", arg="file",
         field="options.tls.keyfile"),
    Flag(("--keyform",), ALL, 'keyfile type, can be either "pem" or "engine" (midge supports pem only).',
         arg="keyform", field="options.tls.keyform"),
    Flag(("--ciphers",), ALL, "openssl compatible list of TLS ciphers to support.", arg="ciphers",
         field="options.tls.ciphers"),
    Flag(("--tls-version",), ALL, "TLS protocol version, can be one of tlsv1.3 tlsv1.2 or tlsv1.1.\n"
         "Defaults to tlsv1.2 if available.", arg="version", field="options.tls.min_version"),
    Flag(("--insecure",), ALL, "do not check that the server certificate hostname matches the remote\n"
         "hostname (the certificate chain is still checked). Using this option means that you\n"
         "cannot be sure that the remote host is the server you wish to connect to and so is\n"
         "insecure. Do not use this option in a production environment.", field="options.tls.insecure"),
    Flag(("--tls-alpn",), ALL, "offer this ALPN protocol during the TLS handshake.", arg="protocol",
         field="options.tls.alpn+"),
    Flag(("--tls-engine",), ALL, "If set, enables the use of a TLS engine device (not supported by midge:\n"
         "Python's ssl module cannot use OpenSSL engines).", arg="engine", noun="engine_id",
         field="options.tls.engine"),
    Flag(("--tls-engine-kpass-sha1",), ALL, "SHA1 of the key password to be used with the selected SSL engine.",
         arg="sha1", noun="kpass sha1", field=None),
    Flag(("--tls-use-os-certs",), ALL, "Load and trust OS provided CA certificates.",
         field="options.tls.use_os_certs"),
    Flag(("--psk",), ALL, "pre-shared-key in hexadecimal (no leading 0x) to enable TLS-PSK mode.",
         arg="hex-key", noun="key", field="options.tls.psk", convert=_psk),
    Flag(("--psk-identity",), ALL, "client identity string for TLS-PSK mode.", arg="identity",
         field="options.tls.psk_identity"),
    Flag(("--proxy",), ALL, "SOCKS5 proxy URL of the form:\n"
         "socks5h://[username[:password]@]hostname[:port]\n"
         'Only "none" and "username" authentication is supported.', arg="socks-url", noun="proxy url",
         field="options.proxy", convert=_proxy),
)

# The flags each tool accepts, by every name.
FLAGS_BY_TOOL: dict[str, dict[str, Flag]] = {
    tool: {name: flag for flag in FLAGS if tool in flag.tools for name in flag.names} for tool in TOOLS
}


# -- parsing --------------------------------------------------------------

def defaults_file(tool: str) -> str | None:
    """The defaults file to read: midge's own first, then Mosquitto's."""
    base = os.environ.get("XDG_CONFIG_HOME")
    if not base:
        home = os.environ.get("HOME")
        if not home:
            return None
        base = os.path.join(home, ".config")
    for name in (f"midge_{tool}", f"mosquitto_{tool}"):
        path = os.path.join(base, name)
        if os.path.isfile(path):
            return path
    return None


def read_defaults(path: str) -> list[str]:
    args: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            flag, _, value = line.partition(" ")
            args.append(flag)
            if value.strip():
                args.append(value.strip())
    return args


def parse(tool: str, argv: list[str], use_defaults: bool = True) -> ClientConfig:
    cfg = ClientConfig(tool=tool)
    if tool == "rr":
        cfg.protocol_version = 5
        cfg.msg_count = 1
    if use_defaults:
        path = defaults_file(tool)
        if path is not None:
            try:
                _Parser(cfg, read_defaults(path)).run()
            except UsageError as exc:
                raise UsageError(f"{exc}\nError: in defaults file {path}") from None
    _Parser(cfg, argv).run()
    check(cfg)
    return cfg


class _Parser:
    """Walks argv once, applying each flag's table entry to `cfg`."""

    def __init__(self, cfg: ClientConfig, argv: list[str]):
        self.cfg = cfg
        self.argv = argv
        self.index = 0
        self.flags = FLAGS_BY_TOOL[cfg.tool]

    def left(self) -> int:
        """How many arguments follow the current one."""
        return len(self.argv) - self.index - 1

    def take(self, flag: Flag) -> str:
        """The next argument: the current flag's value."""
        if not self.left():
            raise UsageError(flag.missing_message())
        self.index += 1
        return self.argv[self.index]

    def run(self) -> None:
        while self.index < len(self.argv):
            arg = self.argv[self.index]
            flag = self.flags.get(arg)
            if flag is None:
                raise UsageError(f"Error: Unknown option '{arg}'.", blank_lines=1)
            try:
                self.apply(flag)
            except UsageError as exc:
                if exc.blank_lines is None:
                    exc.blank_lines = 2
                raise
            self.cfg.given.add(flag.name)
            self.index += 1

    def apply(self, flag: Flag) -> None:
        if flag.action is not None:
            flag.action(self, flag)
        else:
            self.store(flag)

    def store(self, flag: Flag) -> None:
        """Set the flag's field to its (converted) value, or to `const` if it takes none."""
        if flag.arg is None:
            value = flag.const
        else:
            text = self.take(flag)
            value = flag.convert(text) if flag.convert is not None else text
        if flag.field is None:
            return  # accepted and checked, but nothing in midge uses it
        *path, last = flag.field.split(".")
        target = self.cfg
        for name in path:
            target = getattr(target, name)
        if last.endswith("+"):  # a list the flag adds to
            getattr(target, last[:-1]).append(value)
        else:
            setattr(target, last, value)


def check(cfg: ClientConfig) -> None:
    """Whole-configuration checks, in the order of mosquitto's client_config_load; then
    TLS is switched on or off and the port left unset becomes 1883 or 8883."""
    tool, given, tls = cfg.tool, cfg.given, cfg.options.tls
    if cfg.will_payload is not None and cfg.will_topic is None:
        raise UsageError("Error: Will payload given, but no will topic given.")
    if cfg.will_retain and cfg.will_topic is None:
        raise UsageError("Error: Will retain given, but no will topic given.")
    if (tls.certfile is None) != (tls.keyfile is None):
        raise UsageError("Error: Both certfile and keyfile must be provided if one of them is set.")
    if "--keyform" in given and tls.keyfile is None:
        raise UsageError("Error: If keyform is set, keyfile must be also specified.")
    if "--tls-engine-kpass-sha1" in given and ("--keyform" not in given or tls.engine is None):
        raise UsageError("Error: when using tls-engine-kpass-sha1, both tls-engine and keyform must also be provided.")
    if (tls.cafile or tls.capath) and tls.psk is not None:
        raise UsageError("Error: Only one of --psk or --cafile/--capath may be used at once.")
    if tls.psk is not None and not tls.psk_identity:
        raise UsageError("Error: --psk-identity required if --psk used.")
    anonymous = cfg.id_prefix is not None or cfg.client_id is None  # no fixed client id
    if cfg.protocol_version == 5:
        if cfg.session_expiry_interval() == NEVER_EXPIRES and anonymous:
            raise UsageError("Error: You must provide a client id if you are using an infinite session expiry interval.")
    elif not cfg.clean_session and anonymous:
        raise UsageError("Error: You must provide a client id if you are using the -c option.")
    if cfg.protocol_version != 5 and tool == "rr":
        raise UsageError("Error: midge rr needs MQTT v5 (the Response Topic property).")
    if tool == "pub":
        if not cfg.topics or cfg.message_mode is None:
            raise UsageError("Error: Both topic and message must be supplied.", show_usage=True)
    elif tool == "sub":
        if not cfg.topics:
            raise UsageError("Error: You must specify a topic to subscribe to.")
    elif not cfg.topics or not cfg.response_topic or cfg.message_mode is None:
        raise UsageError("Error: All of topic, message, and response topic must be supplied.")
    # What mosquitto finds only when it applies the options (its messages, without the hint).
    if cfg.password is not None and cfg.username is None:
        # MQTT has no password without a user name; mosquitto fails when setting them.
        raise UsageError("Error: Problem setting username and/or password.", hint=False)
    if tls.keyform not in ("pem", "engine"):
        raise UsageError("Error: Problem setting key form, it must be one of 'pem' or 'engine'.", hint=False)
    if tls.min_version is not None and tls.min_version not in ("tlsv1.3", "tlsv1.2", "tlsv1.1"):
        raise UsageError("Error: Problem setting TLS options, check the options are valid.", hint=False)
    _settle_tls_and_port(cfg)


def _settle_tls_and_port(cfg: ClientConfig) -> None:
    """--cafile, --capath, --psk or --tls-use-os-certs mean TLS, and so does port 8883
    alone (with the OS's CAs), as in mosquitto. midge adds: a client certificate alone
    means TLS too, and an unset port is 8883 whenever TLS is on (mosquitto: only with
    --cafile, --capath or --psk), else 1883."""
    options, tls = cfg.options, cfg.options.tls
    port_given = bool(cfg.given & {"-p", "-L"})
    if tls.certfile and not (tls.cafile or tls.capath):
        tls.use_os_certs = True
    if port_given and options.port == 8883 and not (tls.cafile or tls.capath or tls.psk):
        tls.use_os_certs = True
    if not (tls.cafile or tls.capath or tls.psk or tls.use_os_certs):
        options.tls = None
    if not port_given:
        options.port = 8883 if options.tls is not None else 1883


# -- help and error reporting ------------------------------------------------

SUMMARY = {
    "pub": "midge pub is a simple MQTT client that will publish a message on a single topic and exit.",
    "sub": "midge sub is a simple MQTT client that will subscribe to a set of topics and print all messages it receives.",
    "rr": "midge rr is an MQTT v5 client that publishes a request message and waits for a response.",
}
# The usage lines: each flag is written bare and gets its value name from the table.
_TOOL_USAGE = {
    "pub": ["{[-h] [--unix] [-p] [-u] [-P] -t | -L}",
            "{-f | -l | -n | -m | -s}",
            "[-c] [-k] [-q] [-r] [--repeat] [--repeat-delay] [-x]"],
    "sub": ["{[-h] [--unix] [-p] [-u] [-P] -t | -L [-t]}",
            "[-c] [-k] [-q] [-x]",
            "[-C] [-E] [-R] [--retained-only] [--remove-retained] [-T] [-U ...]",
            "[-F] [-W] [-N] [-v] [--pretty]",
            "[--random-filter] [--retain-as-published]"],
    "rr": ["{[-h] [--unix] [-p] [-u] [-P] -t | -L} -e",
           "{-f | -n | -m | -s}",
           "[-c] [-k] [-q] [-R] [-x]",
           "[-F] [-W] [-N] [-v] [--pretty] [--retain-as-published]"],
}
_COMMON_USAGE = [
    "[-A] [--nodelay] [-i] [-I] [-d] [--quiet]",
    "[-M] [-V]",
    "[--will-topic [--will-payload] [--will-qos] [--will-retain]]",
    "[{--cafile | --capath} [--cert] [--key] [--keyform]",
    "  [--ciphers] [--insecure] [--tls-version] [--tls-alpn]",
    "  [--tls-use-os-certs] [--tls-engine] [--tls-engine-kpass-sha1]]",
    "[--psk --psk-identity [--ciphers]]",
    "[--proxy] [-D]",
]
_FLAG_TOKEN = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def usage_flags(tool: str) -> list[str]:
    """Every flag named in the tool's usage lines."""
    return _FLAG_TOKEN.findall(" ".join(_TOOL_USAGE[tool] + _COMMON_USAGE))


def usage_text(tool: str) -> str:
    flags = FLAGS_BY_TOOL[tool]

    def expand(match: re.Match) -> str:
        flag = flags[match.group()]
        return f"{flag.name} {flag.arg}" if flag.arg else flag.name

    head = f"Usage: midge {tool} "
    lines = [_FLAG_TOKEN.sub(expand, line) for line in _TOOL_USAGE[tool] + _COMMON_USAGE]
    text = head + ("\n" + " " * len(head)).join(lines) + "\n"
    return text + f"       midge {tool} --help\n"


def help_text(tool: str) -> str:
    import sys

    from midge import __version__

    lines = [SUMMARY[tool], f"midge {tool} version {__version__} running on Python {sys.version.split()[0]}.",
             "", usage_text(tool)]
    for flag in FLAGS:
        if tool in flag.tools:
            # continuation lines line up after " -c : ", as mosquitto's; aliases follow -c
            indent = "\n" + " " * len(f" {flag.name} : ")
            lines.append(f" {', '.join(flag.names)} : " + flag.help_for(tool).replace("\n", indent))
    lines += ["", f"midge reads default flags from ~/.config/midge_{tool}, or from Mosquitto's",
              f"~/.config/mosquitto_{tool} when that does not exist."]
    return "\n".join(lines) + "\n"


def parse_or_exit(tool: str, argv: list[str]) -> ClientConfig | int:
    """Parse flags; on error or --help print as mosquitto does and return the exit code."""
    import sys

    try:
        return parse(tool, argv)
    except HelpRequested:
        sys.stdout.write(help_text(tool))
        return 1  # as mosquitto_pub --help
    except VersionRequested:
        from midge import __version__

        sys.stdout.write(f"midge {tool} version {__version__} running on Python {sys.version.split()[0]}.\n")
        return 1  # as mosquitto_pub --version
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        if exc.show_usage:  # mosquitto_pub prints its help text on stdout here
            sys.stdout.write(help_text(tool))
        elif exc.hint:
            sys.stderr.write("\n" * ((exc.blank_lines or 1) - 1))
            sys.stderr.write(f"\nUse 'midge {tool} --help' to see usage.\n")
        return 1
