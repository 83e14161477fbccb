"""Flags shared by `midge pub`, `midge sub` and `midge rr` (mosquitto_pub/sub/rr 2.0).

`parse(tool, argv)` reads the defaults file, then `argv`, then checks the result
the way mosquitto's `client_config_load` does, and returns a `ClientConfig` or
raises `UsageError` (message printed, exit 1). `HelpRequested` means `--help`.

Defaults file: midge reads `$XDG_CONFIG_HOME/midge_pub` (or `~/.config/midge_pub`)
when it exists, otherwise Mosquitto's `mosquitto_pub` in the same place, so an
existing setup keeps working and midge can have its own. Only one file is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote

from midge.client.options import ClientOptions, TlsOptions
from midge.protocol.constants import Property
from midge.protocol.packets import Connect, Will

PROPERTY_NAMES = {
    "payload-format-indicator": Property.PAYLOAD_FORMAT_INDICATOR,
    "message-expiry-interval": Property.MESSAGE_EXPIRY_INTERVAL,
    "content-type": Property.CONTENT_TYPE,
    "response-topic": Property.RESPONSE_TOPIC,
    "correlation-data": Property.CORRELATION_DATA,
    "subscription-identifier": Property.SUBSCRIPTION_IDENTIFIER,
    "session-expiry-interval": Property.SESSION_EXPIRY_INTERVAL,
    "assigned-client-identifier": Property.ASSIGNED_CLIENT_IDENTIFIER,
    "server-keep-alive": Property.SERVER_KEEP_ALIVE,
    "authentication-method": Property.AUTHENTICATION_METHOD,
    "authentication-data": Property.AUTHENTICATION_DATA,
    "request-problem-information": Property.REQUEST_PROBLEM_INFORMATION,
    "will-delay-interval": Property.WILL_DELAY_INTERVAL,
    "request-response-information": Property.REQUEST_RESPONSE_INFORMATION,
    "response-information": Property.RESPONSE_INFORMATION,
    "server-reference": Property.SERVER_REFERENCE,
    "reason-string": Property.REASON_STRING,
    "receive-maximum": Property.RECEIVE_MAXIMUM,
    "topic-alias-maximum": Property.TOPIC_ALIAS_MAXIMUM,
    "topic-alias": Property.TOPIC_ALIAS,
    "maximum-qos": Property.MAXIMUM_QOS,
    "retain-available": Property.RETAIN_AVAILABLE,
    "user-property": Property.USER_PROPERTY,
    "maximum-packet-size": Property.MAXIMUM_PACKET_SIZE,
    "wildcard-subscription-available": Property.WILDCARD_SUBSCRIPTION_AVAILABLE,
    "subscription-identifier-available": Property.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    "shared-subscription-available": Property.SHARED_SUBSCRIPTION_AVAILABLE,
}

P = Property
ALLOWED_PROPERTIES = {  # which properties a client may put on which packet (MQTT 5 §2.2.2.2)
    "connect": {P.SESSION_EXPIRY_INTERVAL, P.RECEIVE_MAXIMUM, P.MAXIMUM_PACKET_SIZE,
                P.TOPIC_ALIAS_MAXIMUM, P.REQUEST_RESPONSE_INFORMATION,
                P.REQUEST_PROBLEM_INFORMATION, P.USER_PROPERTY, P.AUTHENTICATION_METHOD,
                P.AUTHENTICATION_DATA},
    "publish": {P.PAYLOAD_FORMAT_INDICATOR, P.MESSAGE_EXPIRY_INTERVAL, P.TOPIC_ALIAS,
                P.RESPONSE_TOPIC, P.CORRELATION_DATA, P.USER_PROPERTY, P.CONTENT_TYPE},
    "will": {P.PAYLOAD_FORMAT_INDICATOR, P.MESSAGE_EXPIRY_INTERVAL, P.CONTENT_TYPE,
             P.RESPONSE_TOPIC, P.CORRELATION_DATA, P.WILL_DELAY_INTERVAL, P.USER_PROPERTY},
    "subscribe": {P.SUBSCRIPTION_IDENTIFIER, P.USER_PROPERTY},
    "unsubscribe": {P.USER_PROPERTY},
    "disconnect": {P.SESSION_EXPIRY_INTERVAL, P.REASON_STRING, P.SERVER_REFERENCE, P.USER_PROPERTY},
    "auth": {P.AUTHENTICATION_METHOD, P.AUTHENTICATION_DATA, P.REASON_STRING, P.USER_PROPERTY},
}
INT_LIMITS = {P.PAYLOAD_FORMAT_INDICATOR: 0xFF, P.REQUEST_PROBLEM_INFORMATION: 0xFF,
              P.REQUEST_RESPONSE_INFORMATION: 0xFF, P.MAXIMUM_QOS: 0xFF, P.RETAIN_AVAILABLE: 0xFF,
              P.WILDCARD_SUBSCRIPTION_AVAILABLE: 0xFF, P.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0xFF,
              P.SHARED_SUBSCRIPTION_AVAILABLE: 0xFF, P.SERVER_KEEP_ALIVE: 0xFFFF,
              P.RECEIVE_MAXIMUM: 0xFFFF, P.TOPIC_ALIAS_MAXIMUM: 0xFFFF, P.TOPIC_ALIAS: 0xFFFF,
              P.MESSAGE_EXPIRY_INTERVAL: 0xFFFFFFFF, P.SESSION_EXPIRY_INTERVAL: 0xFFFFFFFF,
              P.WILL_DELAY_INTERVAL: 0xFFFFFFFF, P.MAXIMUM_PACKET_SIZE: 0xFFFFFFFF,
              P.SUBSCRIPTION_IDENTIFIER: 268435455}
BINARY_PROPERTIES = {P.CORRELATION_DATA, P.AUTHENTICATION_DATA}

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


@dataclass
class ClientConfig:
    tool: str
    # Connection
    host: str | None = None
    port: int | None = None
    unix_path: str | None = None
    transport: str = "tcp"
    bind_address: str | None = None
    client_id: str | None = None
    id_prefix: str | None = None
    keepalive: int = 60
    clean_session: bool = True
    session_expiry: int | None = None
    protocol_version: int = 4
    version_given: bool = False
    username: str | None = None
    password: str | None = None
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    qos: int = 0
    max_inflight: int = 20
    nodelay: bool = False
    proxy: str | None = None
    debug: bool = False
    quiet: bool = False
    properties: dict = field(default_factory=lambda: {name: {} for name in ALLOWED_PROPERTIES})
    # TLS
    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    keyform: str | None = None
    tls_version: str | None = None
    ciphers: str | None = None
    insecure: bool = False
    alpn: list = field(default_factory=list)
    use_os_certs: bool = False
    psk: str | None = None
    psk_identity: str | None = None
    tls_engine: str | None = None
    tls_engine_kpass_sha1: str | None = None
    # Topics and messages
    topics: list = field(default_factory=list)
    message_mode: str | None = None  # "m", "f", "s", "l", "n"
    message: bytes | None = None
    file: str | None = None
    retain: bool = False
    repeat: int = 1
    repeat_delay: float = 0.0
    # sub / rr
    filter_outs: list = field(default_factory=list)
    unsub_topics: list = field(default_factory=list)
    msg_count: int = 0
    timeout: int = 0
    exit_after_sub: bool = False
    no_retain: bool = False
    retained_only: bool = False
    remove_retained: bool = False
    retain_as_published: bool = False
    random_filter: int = 10000  # per ten thousand
    eol: bool = True
    verbose: bool = False
    format: str | None = None
    pretty: bool = False
    response_topic: str | None = None

    # -- what the library needs ------------------------------------------

    def client_options(self) -> ClientOptions:
        tls = None
        if self.cafile or self.capath or self.psk or self.use_os_certs or self.certfile:
            tls = TlsOptions(
                cafile=self.cafile, capath=self.capath, certfile=self.certfile,
                keyfile=self.keyfile, keyform=self.keyform or "pem", min_version=self.tls_version,
                ciphers=self.ciphers, insecure=self.insecure, alpn=list(self.alpn),
                use_os_certs=self.use_os_certs,
                psk=bytes.fromhex(self.psk) if self.psk else None, psk_identity=self.psk_identity,
                engine=self.tls_engine)
        port = self.port
        if port is None:
            port = 8883 if tls is not None else 1883
        return ClientOptions(host=self.host or "localhost", port=port, unix_path=self.unix_path,
                             transport=self.transport, bind_address=self.bind_address,
                             nodelay=self.nodelay, tls=tls, proxy=self.proxy)

    def connect_packet(self) -> Connect:
        props = dict(self.properties["connect"])
        if self.protocol_version == 5:
            if self.session_expiry is not None:
                props[P.SESSION_EXPIRY_INTERVAL] = self.session_expiry
            elif not self.clean_session:
                props[P.SESSION_EXPIRY_INTERVAL] = 0xFFFFFFFF
            if self.tool == "sub" and 0 < self.msg_count < 20 and P.RECEIVE_MAXIMUM not in props:
                props[P.RECEIVE_MAXIMUM] = self.msg_count
        will = None
        if self.will_topic is not None:
            will = Will(self.will_topic, self.will_payload or b"", self.will_qos, self.will_retain,
                        dict(self.properties["will"]) if self.protocol_version == 5 else {})
        return Connect(
            protocol_version=self.protocol_version, client_id=self.resolved_client_id(),
            clean_start=self.clean_session, keepalive=self.keepalive, username=self.username,
            password=None if self.password is None else self.password.encode(),
            will=will, properties=props,
            protocol_name="MQIsdp" if self.protocol_version == 3 else "MQTT")

    def resolved_client_id(self) -> str:
        if self.client_id is not None:
            return self.client_id
        if self.id_prefix is not None:
            return f"{self.id_prefix}{os.getpid()}"
        if self.protocol_version == 3:  # 3.1 forbids empty identifiers: make one up
            import secrets
            import string

            alphabet = string.ascii_letters + string.digits
            return "mosq-" + "".join(secrets.choice(alphabet) for _ in range(18))
        return ""


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
    def __init__(self, cfg: ClientConfig, argv: list[str]):
        self.cfg = cfg
        self.argv = argv
        self.index = 0

    def value(self, flag: str, what: str) -> str:
        if self.index + 1 >= len(self.argv):
            raise UsageError(f"Error: {flag} argument given but no {what} specified.")
        self.index += 1
        return self.argv[self.index]

    def integer(self, flag: str, what: str) -> int:
        text = self.value(flag, what)
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"Error: Invalid {what} '{text}' given for {flag}.") from None

    def run(self) -> None:
        while self.index < len(self.argv):
            arg = self.argv[self.index]
            try:
                self.option(arg)
            except UsageError as exc:
                if exc.blank_lines is None:
                    exc.blank_lines = 2
                raise
            self.index += 1

    def option(self, arg: str) -> None:  # noqa: C901 - one flat table of flags
        cfg, tool = self.cfg, self.cfg.tool
        pub, sub, rr = tool == "pub", tool == "sub", tool == "rr"
        if arg in ("-A",):
            cfg.bind_address = self.value(arg, "address")
        elif arg in ("-c", "--disable-clean-session"):
            cfg.clean_session = False
        elif arg == "--cafile":
            cfg.cafile = self.value(arg, "certificate")
        elif arg == "--capath":
            cfg.capath = self.value(arg, "certificate directory")
        elif arg == "--cert":
            cfg.certfile = self.value(arg, "certificate")
        elif arg == "--ciphers":
            cfg.ciphers = self.value(arg, "ciphers")
        elif arg in ("-C",) and sub:
            cfg.msg_count = self.integer(arg, "count")
            if cfg.msg_count < 1:
                raise UsageError(f'Error: Invalid message count "{cfg.msg_count}".')
        elif arg in ("-d", "--debug"):
            cfg.debug = True
        elif arg in ("-D", "--property"):
            self.property(arg)
        elif arg in ("-e",) and rr:
            cfg.response_topic = self.value(arg, "response topic")
            _check_topic(cfg.response_topic, subscribe=False, what="response topic")
        elif arg in ("-E",) and sub:
            cfg.exit_after_sub = True
        elif arg in ("-f", "--file") and not sub:
            self.message_mode("f")
            cfg.file = self.value(arg, "file")
        elif arg in ("-F",) and not pub:
            cfg.format = self.value(arg, "format")
            from midge.cli.output import check_format

            error = check_format(cfg.format)
            if error:
                raise UsageError(f"Error: {error}", blank_lines=1)
        elif arg == "--help":
            raise HelpRequested()
        elif arg == "--version":
            raise VersionRequested()
        elif arg in ("-h", "--host"):
            cfg.host = self.value(arg, "host")
        elif arg == "--insecure":
            cfg.insecure = True
        elif arg in ("-i", "--id"):
            if cfg.id_prefix is not None:
                raise UsageError("Error: -i and -I argument cannot be used together.")
            cfg.client_id = self.value(arg, "id")
        elif arg in ("-I", "--id-prefix"):
            if cfg.client_id is not None:
                raise UsageError("Error: -i and -I argument cannot be used together.")
            cfg.id_prefix = self.value(arg, "id prefix")
        elif arg in ("-k", "--keepalive"):
            cfg.keepalive = self.integer(arg, "keepalive")
            if not 5 <= cfg.keepalive <= 65535:
                raise UsageError(f"Error: Invalid keepalive given, it must be between 5 and 65535 inclusive.")
        elif arg == "--key":
            cfg.keyfile = self.value(arg, "key")
        elif arg == "--keyform":
            cfg.keyform = self.value(arg, "keyform")
        elif arg in ("-L", "--url"):
            self.url(self.value(arg, "URL"))
        elif arg in ("-l", "--stdin-line") and pub:
            self.message_mode("l")
        elif arg in ("-m", "--message") and not sub:
            self.message_mode("m")
            cfg.message = os.fsencode(self.value(arg, "message"))
        elif arg in ("-M",):
            cfg.max_inflight = self.integer(arg, "max_inflight")
            if cfg.max_inflight < 1:
                raise UsageError("Error: Maximum inflight messages must be greater than 0.")
        elif arg in ("-n", "--null-message") and not sub:
            self.message_mode("n")
        elif arg in ("-N",) and not pub:
            cfg.eol = False
        elif arg == "--nodelay":
            cfg.nodelay = True
        elif arg in ("-p", "--port"):
            cfg.port = self.integer(arg, "port")
            if not 0 < cfg.port < 65536:
                raise UsageError(f"Error: Invalid port given: {cfg.port}")
        elif arg in ("-P", "--pw"):
            cfg.password = self.value(arg, "password")
        elif arg == "--pretty" and not pub:
            cfg.pretty = True
        elif arg == "--proxy":
            cfg.proxy = self.value(arg, "proxy URL")
            from midge.client.socks import ProxyError, parse_proxy_url

            try:
                parse_proxy_url(cfg.proxy)
            except ProxyError as exc:
                raise UsageError(f"Error: {exc}.") from None
        elif arg == "--psk":
            cfg.psk = self.value(arg, "key")
            try:
                bytes.fromhex(cfg.psk)
            except ValueError:
                raise UsageError(f"Error: Invalid PSK '{cfg.psk}': hexadecimal digits expected.") from None
        elif arg == "--psk-identity":
            cfg.psk_identity = self.value(arg, "identity")
        elif arg in ("-q", "--qos"):
            cfg.qos = self.integer(arg, "QoS")
            if not 0 <= cfg.qos <= 2:
                raise UsageError(f"Error: Invalid QoS given: {cfg.qos}", blank_lines=1)
        elif arg == "--quiet":
            cfg.quiet = True
        elif arg in ("-r", "--retain") and pub:
            cfg.retain = True
        elif arg in ("-R",) and not pub:
            cfg.no_retain = True
        elif arg == "--random-filter" and sub:
            text = self.value(arg, "filter")
            try:
                value = float(text)
            except ValueError:
                value = -1
            if value < 0.1:  # mosquitto_sub takes anything above 100 as 100
                raise UsageError("Error: --random-filter chance must be between 0.1-100.0")
            cfg.random_filter = min(int(value * 100), 10000)
        elif arg == "--remove-retained" and sub:
            cfg.remove_retained = True
        elif arg == "--repeat" and pub:
            cfg.repeat = self.integer(arg, "repeat count")
            if cfg.repeat < 1:
                raise UsageError(f"Error: --repeat argument must be >0.")
        elif arg == "--repeat-delay" and pub:
            text = self.value(arg, "delay")
            try:
                cfg.repeat_delay = float(text)
            except ValueError:
                cfg.repeat_delay = -1
            if cfg.repeat_delay < 0:
                raise UsageError(f"Error: --repeat-delay argument must be >=0.0.")
        elif arg == "--retain-as-published" and not pub:
            cfg.retain_as_published = True
        elif arg == "--retained-only" and sub:
            cfg.retained_only = True
        elif arg in ("-s", "--stdin-file") and not sub:
            self.message_mode("s")
        elif arg in ("-t", "--topic"):
            topic = self.value(arg, "topic")
            _check_topic(topic, subscribe=sub)
            if sub:
                cfg.topics.append(topic)
            else:
                cfg.topics = [topic]  # pub and rr: the last -t wins, as in mosquitto_pub
        elif arg in ("-T", "--filter-out") and sub:
            topic = self.value(arg, "topic filter")
            _check_topic(topic, subscribe=True, what="filter topic")
            cfg.filter_outs.append(topic)
        elif arg == "--tls-alpn":
            cfg.alpn.append(self.value(arg, "protocol"))
        elif arg == "--tls-engine":
            cfg.tls_engine = self.value(arg, "TLS engine")
        elif arg == "--tls-engine-kpass-sha1":
            cfg.tls_engine_kpass_sha1 = self.value(arg, "kpass sha1")
        elif arg == "--tls-use-os-certs":
            cfg.use_os_certs = True
        elif arg == "--tls-version":
            cfg.tls_version = self.value(arg, "version")
        elif arg in ("-U", "--unsubscribe") and sub:
            topic = self.value(arg, "unsubscribe topic")
            _check_topic(topic, subscribe=True)
            cfg.unsub_topics.append(topic)
        elif arg in ("-u", "--username"):
            cfg.username = self.value(arg, "username")
        elif arg == "--unix":
            cfg.unix_path = self.value(arg, "unix socket path")
        elif arg in ("-v", "--verbose") and not pub:
            cfg.verbose = True
        elif arg in ("-V", "--protocol-version"):
            text = self.value(arg, "protocol version")
            versions = {"mqttv31": 3, "31": 3, "mqttv311": 4, "311": 4, "mqttv5": 5, "5": 5}
            if text not in versions:
                raise UsageError(f"Error: Invalid protocol version argument given.")
            cfg.protocol_version = versions[text]
            cfg.version_given = True
        elif arg in ("-W",) and not pub:
            cfg.timeout = self.integer(arg, "timeout")
            if cfg.timeout < 1:
                raise UsageError(f"Error: Invalid timeout \"{cfg.timeout}\".")
        elif arg == "--will-payload":
            cfg.will_payload = os.fsencode(self.value(arg, "payload"))
        elif arg == "--will-qos":
            cfg.will_qos = self.integer(arg, "will QoS")
            if not 0 <= cfg.will_qos <= 2:
                raise UsageError(f"Error: Invalid will QoS {cfg.will_qos}.")
        elif arg == "--will-retain":
            cfg.will_retain = True
        elif arg == "--will-topic":
            cfg.will_topic = self.value(arg, "will topic")
            _check_topic(cfg.will_topic, subscribe=False, what="will topic")
        elif arg in ("-x",):
            text = self.value(arg, "session expiry interval")
            if text in ("∞", "-1"):
                cfg.session_expiry = 0xFFFFFFFF
            else:
                try:
                    cfg.session_expiry = int(text)
                except ValueError:
                    raise UsageError("Error: session-expiry-interval not a number.") from None
                if not 0 <= cfg.session_expiry <= 0xFFFFFFFF:
                    raise UsageError(f"Error: session-expiry-interval not a valid value ({text}).")
        else:
            raise UsageError(f"Error: Unknown option '{arg}'.", blank_lines=1)

    def message_mode(self, mode: str) -> None:
        if self.cfg.message_mode is not None and self.cfg.message_mode != mode:
            raise UsageError("Error: Only one type of message can be sent at once.")
        self.cfg.message_mode = mode

    def property(self, flag: str) -> None:
        command = self.value(flag, "property command")
        name = self.value(flag, "property identifier")
        if command not in ALLOWED_PROPERTIES:
            raise UsageError("Error: Invalid command given in --property argument.")
        ident = PROPERTY_NAMES.get(name)
        if ident is None:
            raise UsageError("Error: Invalid property name given in --property argument.")
        if ident not in ALLOWED_PROPERTIES[command]:
            raise UsageError(f"Error: {name} property not allowed for {command} in --property argument.")
        props = self.cfg.properties[command]
        if ident == P.USER_PROPERTY:
            key = self.value(flag, "property key")
            value = self.value(flag, "property value")
            props.setdefault(ident, []).append((key, value))
        else:
            text = self.value(flag, "property value")
            if ident in INT_LIMITS:
                try:
                    value = int(text, 0)
                except ValueError:
                    value = -1
                if not 0 <= value <= INT_LIMITS[ident]:
                    raise UsageError(f"Error: Invalid value {text} for property {name}.")
            elif ident in BINARY_PROPERTIES:
                value = os.fsencode(text)
            else:
                value = text
            if ident in props:
                raise UsageError(f"Error: Duplicate property {name} for {command}.")
            props[ident] = value
        self.cfg.protocol_version = 5  # properties need MQTT v5

    def url(self, url: str) -> None:
        cfg = self.cfg
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise UsageError("Error: unsupported URL scheme.")
        scheme = scheme.lower()
        defaults = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
        if scheme not in defaults:
            raise UsageError("Error: unsupported URL scheme.")
        authority, slash, topic = rest.partition("/")
        if not slash or not topic:
            raise UsageError("Error: Invalid URL for -L argument specified - topic missing.", blank_lines=1)
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
        cfg.host = host
        cfg.port = int(port_text) if port_text else defaults[scheme]
        if scheme in ("mqtts", "wss"):
            cfg.use_os_certs = True
        if scheme in ("ws", "wss"):
            cfg.transport = "websockets"
        if cfg.tool == "sub":
            cfg.topics.append(topic)
        else:
            cfg.topics = [topic]


def _check_topic(topic: str, subscribe: bool, what: str = "topic") -> None:
    if subscribe:
        parts = topic.split("/")
        ok = topic != "" and all(
            (p in ("+", "#") or ("+" not in p and "#" not in p)) for p in parts
        ) and ("#" not in parts[:-1])
        if not ok:
            kind = "subscription topic" if what == "topic" else what
            raise UsageError(f"Error: Invalid {kind} '{topic}', are all '+' and '#' wildcards correct?",
                             blank_lines=1)
    else:
        if topic == "" or "+" in topic or "#" in topic:
            kind = "publish topic" if what == "topic" else what
            raise UsageError(f"Error: Invalid {kind} '{topic}', does it contain '+' or '#'?", blank_lines=1)
    if "\0" in topic:
        raise UsageError(f"Error: Invalid {what} '{topic}'.", blank_lines=1)


def check(cfg: ClientConfig) -> None:
    """Whole-configuration checks (mosquitto's client_config_load)."""
    tool = cfg.tool
    if cfg.will_payload is not None and cfg.will_topic is None:
        raise UsageError("Error: Will payload given, but no will topic given.")
    if cfg.will_retain and cfg.will_topic is None:
        raise UsageError("Error: Will retain given, but no will topic given.")
    if (cfg.certfile is None) != (cfg.keyfile is None):
        raise UsageError("Error: Both certfile and keyfile must be provided if one of them is set.")
    if cfg.keyform is not None and cfg.keyfile is None:
        raise UsageError("Error: If keyform is set, keyfile must be also specified.")
    if cfg.keyform is not None and cfg.keyform not in ("pem", "engine"):
        raise UsageError(f"Error: Invalid keyform \"{cfg.keyform}\": use pem or engine.")
    if cfg.tls_version is not None and cfg.tls_version not in ("tlsv1.3", "tlsv1.2", "tlsv1.1"):
        raise UsageError("Error: Problem setting TLS options, check the options are valid.", hint=False)
    if cfg.tls_engine_kpass_sha1 is not None and (cfg.keyform is None or cfg.tls_engine is None):
        raise UsageError("Error: when using tls-engine-kpass-sha1, both tls-engine and keyform must also be provided.")
    if (cfg.cafile or cfg.capath) and cfg.psk:
        raise UsageError("Error: Only one of --psk or --cafile/--capath may be used at once.")
    if cfg.password is not None and cfg.username is None:
        # MQTT has no password without a user name; mosquitto fails when setting them.
        raise UsageError("Error: Problem setting username and/or password.", hint=False)
    if cfg.psk and not cfg.psk_identity:
        raise UsageError("Error: --psk-identity required if --psk used.")
    if cfg.certfile and not (cfg.cafile or cfg.capath or cfg.use_os_certs):
        cfg.use_os_certs = True  # a client certificate alone still means TLS
    if cfg.port == 8883 and not (cfg.cafile or cfg.capath or cfg.psk):
        cfg.use_os_certs = True
    if not cfg.clean_session and cfg.protocol_version != 5 and cfg.client_id is None and cfg.id_prefix is None:
        raise UsageError("Error: You must provide a client id if you are using the -c option.")
    if cfg.protocol_version != 5:
        if tool == "rr":
            raise UsageError("Error: midge rr needs MQTT v5 (the Response Topic property).")
    if tool == "pub":
        if not cfg.topics or cfg.message_mode is None:
            raise UsageError("Error: Both topic and message must be supplied.", show_usage=True)
    elif tool == "sub":
        if not cfg.topics:
            raise UsageError("Error: You must specify a topic to subscribe to.")
    else:
        if not cfg.topics or not cfg.response_topic or cfg.message_mode is None:
            raise UsageError("Error: All of topic, message, and response topic must be supplied.")


# -- help and error reporting ------------------------------------------------

SUMMARY = {
    "pub": "midge pub is a simple MQTT client that publishes a message on a single topic and exits.",
    "sub": "midge sub is a simple MQTT client that subscribes to a set of topics and prints all messages it receives.",
    "rr": "midge rr is an MQTT v5 request/response client: it sends a request and waits for one response.",
}
USAGE = {
    "pub": "Usage: midge pub {[-h host] [--unix path] [-p port] [-u username] [-P password] -t topic | -L URL}\n"
           "                 {-f file | -l | -n | -m message | -s}\n"
           "                 [-c] [-k keepalive] [-q qos] [-r] [--repeat N] [--repeat-delay time] [-x session-expiry]\n",
    "sub": "Usage: midge sub {[-h host] [--unix path] [-p port] [-u username] [-P password] -t topic | -L URL [-t topic]}\n"
           "                 [-c] [-k keepalive] [-q qos] [-x session-expiry-interval]\n"
           "                 [-C msg_count] [-E] [-R] [--retained-only] [--remove-retained] [-T filter_out] [-U topic ...]\n"
           "                 [-F format] [-W timeout_secs] [-N] [-v] [--pretty] [--random-filter chance]\n",
    "rr": "Usage: midge rr {[-h host] [--unix path] [-p port] [-u username] [-P password] -t topic | -L URL}\n"
          "                -e response-topic {-f file | -n | -m message | -s}\n"
          "                [-c] [-k keepalive] [-q qos] [-R] [-F format] [-W timeout_secs] [-N] [-v] [--pretty]\n",
}
COMMON_USAGE = (
    "                 [-A bind_address] [--nodelay] [-i id] [-I id_prefix] [-d] [--quiet] [-M max_inflight]\n"
    "                 [-V protocol-version] [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]\n"
    "                 [{--cafile file | --capath dir} [--cert file] [--key file] [--ciphers ciphers] [--insecure]\n"
    "                   [--tls-alpn protocol] [--tls-version version] [--tls-use-os-certs]]\n"
    "                 [--psk hex-key --psk-identity identity [--ciphers ciphers]]\n"
    "                 [--proxy socks-url] [-D command identifier value]\n"
    "       midge {tool} --help\n"
)
OPTIONS = [
    ("-A", "pub sub rr", "bind the outgoing socket to this host/ip address."),
    ("-c", "pub sub rr", "disable clean session/enable persistent client mode (v5: session never expires unless -x)."),
    ("-C", "sub", "disconnect and exit after receiving 'msg_count' messages."),
    ("-d", "pub sub rr", "print protocol debug messages (Client ... sending CONNECT)."),
    ("-D", "pub sub rr", "define an MQTT v5 property: -D command identifier value (implies -V 5)."),
    ("-e", "rr", "topic on which the response is expected (sent as the Response Topic property)."),
    ("-E", "sub", "exit once all subscriptions have been acknowledged by the broker."),
    ("-f", "pub rr", "send the contents of a file as the message."),
    ("-F", "sub rr", "output format: %t topic, %p payload, %j/%J JSON, %x hex, @H strftime, ... (see mosquitto_sub(1))."),
    ("-h", "pub sub rr", "mqtt host to connect to. Defaults to localhost."),
    ("-i", "pub sub rr", "id to use for this client. Defaults to an id assigned by the broker."),
    ("-I", "pub sub rr", "define the client id as id_prefix appended with the process id."),
    ("-k", "pub sub rr", "keep alive in seconds for this client. Defaults to 60."),
    ("-L", "pub sub rr", "URL: mqtt(s)://[username[:password]@]host[:port]/topic, or ws(s):// for MQTT over WebSocket."),
    ("-l", "pub", "read messages from stdin, sending a separate message for each line."),
    ("-m", "pub rr", "message payload to send."),
    ("-M", "pub sub rr", "the maximum inflight messages for QoS 1/2. Defaults to 20."),
    ("-n", "pub rr", "send a null (zero length) message."),
    ("-N", "sub rr", "do not add an end of line character when printing the payload."),
    ("-p", "pub sub rr", "network port to connect to. Defaults to 1883 for plain MQTT and 8883 for MQTT over TLS."),
    ("-P", "pub sub rr", "provide a password."),
    ("-q", "pub sub rr", "quality of service level to use. Defaults to 0."),
    ("-r", "pub", "message should be retained."),
    ("-R", "sub rr", "do not print stale messages (those with retain set)."),
    ("-s", "pub rr", "read message from stdin, sending the entire input as a message."),
    ("-t", "pub sub rr", "mqtt topic (sub: may be repeated)."),
    ("-T", "sub", "topic string to filter out of results. May be repeated."),
    ("-u", "pub sub rr", "provide a username."),
    ("-U", "sub", "unsubscribe from a topic. May be repeated."),
    ("-v", "sub rr", "print published messages verbosely (topic payload)."),
    ("-V", "pub sub rr", "MQTT version: mqttv5, mqttv311 or mqttv31 (5, 311, 31). Defaults to mqttv311 (rr: mqttv5)."),
    ("-W", "sub rr", "exit (code 27) after this many seconds."),
    ("-x", "pub sub rr", "v5 session-expiry-interval; -1, 4294967295 or ∞ mean never."),
    ("--help", "pub sub rr", "display this message."),
    ("--version", "pub sub rr", "display the version."),
    ("--nodelay", "pub sub rr", "disable Nagle's algorithm."),
    ("--pretty", "sub rr", "indent JSON output (%j, %J)."),
    ("--quiet", "pub sub rr", "don't print error messages."),
    ("--random-filter", "sub", "only print this percentage (0.1-100) of received messages."),
    ("--remove-retained", "sub", "clear each received retained message from the broker."),
    ("--repeat", "pub", "with -f, -m, -n or -s, publish the message N times."),
    ("--repeat-delay", "pub", "seconds (a float) to wait between repeated publishes."),
    ("--retain-as-published", "sub rr", "v5 subscription option: keep the retain flag as published."),
    ("--retained-only", "sub", "only handle retained messages; exit at the first non-retained one."),
    ("--unix", "pub sub rr", "connect through a unix domain socket, e.g. /tmp/mosquitto.sock."),
    ("--will-payload", "pub sub rr", "payload of the client Will (zero length if not given)."),
    ("--will-qos", "pub sub rr", "QoS level of the client Will."),
    ("--will-retain", "pub sub rr", "make the client Will retained."),
    ("--will-topic", "pub sub rr", "the topic on which to publish the client Will."),
    ("--cafile", "pub sub rr", "file of trusted CA certificates; turns TLS on."),
    ("--capath", "pub sub rr", "directory of trusted CA certificates; turns TLS on."),
    ("--cert", "pub sub rr", "client certificate for authentication."),
    ("--key", "pub sub rr", "client private key for authentication."),
    ("--keyform", "pub sub rr", "key type: pem (engine is not supported by midge)."),
    ("--ciphers", "pub sub rr", "OpenSSL cipher list (TLS 1.2 and PSK)."),
    ("--tls-version", "pub sub rr", "minimum TLS version: tlsv1.3, tlsv1.2 (default) or tlsv1.1."),
    ("--insecure", "pub sub rr", "do not check the server certificate's host name (the chain is always checked)."),
    ("--tls-alpn", "pub sub rr", "offer this ALPN protocol."),
    ("--tls-engine", "pub sub rr", "OpenSSL engine: not supported by midge (fails with an explanation)."),
    ("--tls-use-os-certs", "pub sub rr", "also trust the operating system's CA certificates."),
    ("--psk", "pub sub rr", "pre-shared key in hexadecimal (no leading 0x) for TLS-PSK."),
    ("--psk-identity", "pub sub rr", "client identity for TLS-PSK."),
    ("--proxy", "pub sub rr", "SOCKS5 proxy URL: socks5h://[username[:password]@]hostname[:port]."),
]


def help_text(tool: str) -> str:
    lines = [SUMMARY[tool], "", USAGE[tool] + COMMON_USAGE.replace("{tool}", tool)]
    for flag, tools, text in OPTIONS:
        if tool in tools.split():
            lines.append(f" {flag} : {text}")
    lines += ["", "midge reads default flags from ~/.config/midge_" + tool
              + " (or Mosquitto's ~/.config/mosquitto_" + tool + " when that does not exist)."]
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

        sys.stdout.write(f"midge {tool} version {__version__} (Python {sys.version.split()[0]}).\n")
        return 1  # as mosquitto_pub --version
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        if exc.show_usage:  # mosquitto_pub prints its help text on stdout here
            sys.stdout.write(help_text(tool))
        elif exc.hint:
            sys.stderr.write("\n" * ((exc.blank_lines or 1) - 1))
            sys.stderr.write(f"\nUse 'midge {tool} --help' to see usage.\n")
        return 1
