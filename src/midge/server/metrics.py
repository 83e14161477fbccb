"""`protocol metrics`: `GET /metrics` in the Prometheus text exposition format (0.0.4).

    listener 9234 127.0.0.1
    protocol metrics

A metrics listener is an ordinary listener whose top stage speaks HTTP instead of MQTT,
so every TLS option of a listener applies to it unchanged (certfile/keyfile for HTTPS,
require_certificate + cafile for client certificates, crlfile, require_ocsp). When a
`password_file` applies to the listener and `allow_anonymous` is false, a scrape must
send HTTP basic auth with a user of that file (a verified client certificate counts
instead). One request per connection (`Connection: close`).

The figures are read when scraped, from the broker, the listeners and the bridges;
nothing is counted twice for metrics. Names follow Prometheus conventions: `midge_`
prefix, `_total` counters, seconds and bytes. See docs/operations.md for the list.
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import datetime, timezone

from midge import __version__
from midge.security.throttle import peer_host
from midge.server.tasks import spawn
from midge.server.tls_diagnostics import FailureKind

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192
#: Every failure kind a TLS handshake can end with (listed at 0 before the first one).
FAILURE_KINDS = tuple(sorted(value for name, value in vars(FailureKind).items()
                             if not name.startswith("_") and isinstance(value, str)))


# -- Rendering --------------------------------------------------------------------------

def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class Exposition:
    """Builds the text format: one HELP/TYPE header per family, then its samples."""

    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples) -> None:
        """samples: iterable of (labels dict, value), or a single number."""
        if isinstance(samples, (int, float)):
            samples = [({}, samples)]
        samples = list(samples)
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, histogram, labels: dict | None = None) -> None:
        labels = labels or {}
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for bound, count in histogram.cumulative():
            self.lines.append(f"{name}_bucket{_labels({**labels, 'le': _number(bound)})} {count}")
        self.lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
        self.lines.append(f"{name}_count{_labels(labels)} {histogram.count}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def render(server, now: float | None = None, wall: datetime | None = None) -> str:
    """Every figure of the running server, in the text exposition format."""
    out = Exposition()
    broker = server.broker
    stats = broker.stats
    now = server.loop.time() if now is None else now
    wall = wall or datetime.now(timezone.utc)
    out.family("midge_build_info", "gauge", "midge's version (always 1).", [({"version": __version__}, 1)])
    out.family("midge_uptime_seconds", "gauge", "Seconds since the broker started ($SYS/broker/uptime).",
               round(now - broker.start_time, 3))
    sessions = len(broker.sessions)
    connected = len(broker.clients)
    out.family("midge_clients_connected", "gauge", "Clients connected ($SYS/broker/clients/connected).",
               connected)
    out.family("midge_sessions", "gauge", "Sessions, connected or not ($SYS/broker/clients/total).", sessions)
    out.family("midge_sessions_disconnected", "gauge",
               "Persistent sessions whose client is not connected ($SYS/broker/clients/disconnected).",
               sessions - connected)
    out.family("midge_sessions_maximum", "gauge", "Most sessions seen ($SYS/broker/clients/maximum).",
               max(stats.clients_maximum, sessions))
    pool = server.auth_pool  # None before start
    if pool is not None:
        out.family("midge_password_checks_running", "gauge",
                   "Full password hashes (PBKDF2) running on the hashing threads now.", pool.running)
        out.family("midge_password_checks_waiting", "gauge",
                   "Password checks queued for a hashing thread (a login storm shows here).", pool.waiting)
    counters = (
        ("midge_sessions_expired_total", stats.clients_expired,
         "Persistent sessions expired ($SYS/broker/clients/expired)."),
        ("midge_messages_received_total", stats.messages_received,
         "MQTT packets received ($SYS/broker/messages/received)."),
        ("midge_messages_sent_total", stats.messages_sent, "MQTT packets sent ($SYS/broker/messages/sent)."),
        ("midge_publish_messages_received_total", stats.publish_received,
         "PUBLISH packets received ($SYS/broker/publish/messages/received)."),
        ("midge_publish_messages_sent_total", stats.publish_sent,
         "PUBLISH packets sent ($SYS/broker/publish/messages/sent)."),
        ("midge_publish_messages_dropped_total", stats.publish_dropped,
         "PUBLISH messages dropped: queue full or client offline ($SYS/broker/publish/messages/dropped)."),
        ("midge_received_bytes_total", stats.bytes_received, "Bytes received ($SYS/broker/bytes/received)."),
        ("midge_sent_bytes_total", stats.bytes_sent, "Bytes sent ($SYS/broker/bytes/sent)."),
        ("midge_publish_received_bytes_total", stats.publish_bytes_received,
         "PUBLISH payload bytes received ($SYS/broker/publish/bytes/received)."),
        ("midge_publish_sent_bytes_total", stats.publish_bytes_sent,
         "PUBLISH payload bytes sent ($SYS/broker/publish/bytes/sent)."),
        ("midge_sockets_opened_total", stats.sockets, "MQTT connections opened (load/sockets)."),
        ("midge_connects_total", stats.connections, "CONNECTs accepted (load/connections)."),
    )
    for name, value, help_text in counters:
        out.family(name, "counter", help_text, value)
    stored = broker.retained.count
    stored_bytes = broker.retained.bytes
    for session in broker.sessions.values():
        stored += len(session.inflight) + session.queued
        stored_bytes += session.inflight_bytes + session.queue_bytes
    out.family("midge_stored_messages", "gauge",
               "Retained, queued and in-flight messages ($SYS/broker/store/messages/count).", stored)
    out.family("midge_stored_messages_bytes", "gauge",
               "Payload bytes of the stored messages ($SYS/broker/store/messages/bytes).", stored_bytes)
    out.family("midge_retained_messages", "gauge",
               "Retained messages ($SYS/broker/retained messages/count).", broker.retained.count)
    out.family("midge_subscriptions", "gauge", "Subscriptions ($SYS/broker/subscriptions/count).",
               broker.subs.count - broker.subs.shared_count)
    out.family("midge_shared_subscriptions", "gauge",
               "Shared subscriptions ($SYS/broker/shared_subscriptions/count).", broker.subs.shared_count)
    _listeners(out, server, wall)
    _bridges(out, server)
    _cluster(out, server)
    persistence = getattr(server, "persistence", None)
    if persistence is not None and getattr(persistence, "write_times", None) is not None:
        out.histogram("midge_persistence_write_seconds",
                      "Time to write one batch of changes to the persistence file (before any "
                      "acknowledgement leaves).", persistence.write_times)
    return out.text()


def _listeners(out: Exposition, server, wall: datetime) -> None:
    states = server.listeners
    out.family("midge_listener_connections", "gauge", "Open connections per listener.",
               [({"listener": s.listener.name, "protocol": s.listener.protocol}, s.connection_count)
                for s in states])
    tls_states = [s for s in states if s.tls is not None]
    if not tls_states:
        return
    results, failures = [], []
    for state in tls_states:
        counts = state.tls_results
        failed = sum(v for k, v in counts.items() if k != "success")
        results.append(({"listener": state.listener.name, "result": "success"}, counts.get("success", 0)))
        results.append(({"listener": state.listener.name, "result": "failure"}, failed))
        kinds = sorted(set(FAILURE_KINDS) | (set(counts) - {"success"}))
        failures += [({"listener": state.listener.name, "kind": kind}, counts.get(kind, 0)) for kind in kinds]
    out.family("midge_tls_handshakes_total", "counter",
               "TLS handshakes per listener, by result (a refused OCSP check is a failure).", results)
    out.family("midge_tls_handshake_failures_total", "counter",
               "Failed TLS handshakes per listener, by kind (the names of tls_diagnostics.FailureKind).",
               failures)
    certificates, crls = [], []
    for state in tls_states:
        not_after = getattr(state.tls, "certificate_not_after", None)
        if not_after is not None:
            certificates.append(({"listener": state.listener.name, "certfile": state.listener.certfile},
                                 round((not_after - wall).total_seconds(), 3)))
        for crl in getattr(state.tls, "crls", ()):
            if crl.next_update_utc is not None:
                crls.append(({"listener": state.listener.name, "issuer": crl.issuer.rfc4514_string()},
                             round((crl.next_update_utc - wall).total_seconds(), 3)))
    if certificates:
        out.family("midge_tls_certificate_expires_in_seconds", "gauge",
                   "Seconds until the listener's certificate (certfile) expires; negative once expired.",
                   certificates)
    if crls:
        out.family("midge_tls_crl_expires_in_seconds", "gauge",
                   "Seconds until each CRL of the listener passes its nextUpdate (then OpenSSL refuses "
                   "every client certificate).", crls)


def _bridges(out: Exposition, server) -> None:
    bridges = getattr(server, "bridges", None) or []
    if not bridges:
        return
    out.family("midge_bridge_connected", "gauge", "1 while the bridge is connected to its remote broker.",
               [({"bridge": bridge.config.name}, bool(getattr(bridge, "connected", False)))
                for bridge in bridges])


def _cluster(out: Exposition, server) -> None:
    """The node's figures in its cluster ($SYS/broker/cluster/...; docs/cluster.md)."""
    cluster = getattr(server, "cluster", None)
    router = getattr(cluster, "router", None)
    if router is None:
        return
    moves = router.moves
    out.family("midge_cluster_node_info", "gauge", "This node's id and cluster name (always 1).",
               [({"node_id": cluster.node_id, "cluster": cluster.name}, 1)])
    out.family("midge_cluster_nodes", "gauge", "Live nodes of the cluster, this one included.",
               len(router.nodes) + 1)
    out.family("midge_cluster_nats_connected", "gauge", "1 while the node is connected to NATS.",
               int(cluster.connected))
    out.family("midge_cluster_nats_rtt_seconds", "gauge", "Round trip to the NATS server, last measured.",
               round(cluster.rtt_ms / 1000, 6))
    out.family("midge_cluster_messages_routed_total", "counter",
               "Messages that crossed to or from other nodes, by direction.",
               [({"direction": "sent"}, router.routed_out), ({"direction": "received"}, router.routed_in)])
    out.family("midge_cluster_messages_dropped_total", "counter",
               "Messages for other nodes dropped while NATS was away (beyond 8 MiB held).", cluster.dropped)
    out.family("midge_cluster_session_moves_total", "counter",
               "Persistent sessions moved here from another node (in) or to another node (out).",
               [({"direction": "in"}, moves.moved_in), ({"direction": "out"}, moves.moved_out)])
    out.family("midge_cluster_sessions_restored_total", "counter",
               "Persistent sessions resumed from their JetStream record (their node died or restarted).",
               moves.restored)


# -- The HTTP stage ---------------------------------------------------------------------

class MetricsStage:
    """The top stage of a `protocol metrics` connection: one HTTP request, one answer.

    Same shape as the TLS and WebSocket stages. It never completes a handshake (no MQTT
    client is started); after the answer it marks itself closed so the connection sends
    it (through TLS) and closes.
    """

    __slots__ = ("server", "state", "connection", "buffer", "out", "failure", "closed_by_peer",
                 "handshake_complete", "info", "pending")

    def __init__(self, server, state, connection):
        self.server = server
        self.state = state
        self.connection = connection
        self.buffer = b""
        self.out = b""
        self.failure = None
        self.closed_by_peer = False  # set after the answer: the connection then closes
        self.handshake_complete = False
        self.info = None
        self.pending = False  # the answer waits for a password hash (off the loop)

    def feed(self, data: bytes) -> bytes:
        if self.closed_by_peer or self.pending:
            return b""
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_REQUEST:
                self._answer(431, "Request Header Fields Too Large", "request headers too large\n")
            return b""
        self._request(self.buffer[:end].decode("latin-1"))
        return b""

    def _request(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._answer(400, "Bad Request", "bad request\n")
            return
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            self._answer(405, "Method Not Allowed", "only GET /metrics\n", extra="Allow: GET, HEAD\r\n")
            return
        if target.split("?", 1)[0] != "/metrics":
            self._answer(404, "Not Found", "metrics are at /metrics\n")
            return
        verdict = self._authorised(headers.get("authorization", ""))
        if isinstance(verdict, bool):
            self._authorised_answer(verdict, method)
            return
        # A full password hash runs on the server's pool: answer when it is done.
        self.pending = True   # nothing more is read from this connection
        server = self.server
        spawn(server.loop, server.tasks, self._answer_later(verdict, method), server.log,
              "metrics basic auth")

    async def _answer_later(self, verdict, method: str) -> None:
        try:
            authorised = await verdict
        except Exception as exc:  # noqa: BLE001 - a failed check denies, and says why
            self.server.log.error(f"Metrics basic auth check failed: {exc!r}; denying.")
            authorised = False
        self._authorised_answer(authorised, method)
        self.connection.stage_output(self)

    def _authorised_answer(self, authorised: bool, method: str) -> None:
        if not authorised:
            self._answer(401, "Unauthorized", "basic auth with a user of the password_file is required\n",
                         extra='WWW-Authenticate: Basic realm="midge metrics", charset="UTF-8"\r\n')
            return
        body = render(self.server)
        self._answer(200, "OK", body, content_type=CONTENT_TYPE, head_only=method == "HEAD")

    def _authorised(self, header: str):
        """Basic auth when a password_file applies and anonymous clients are refused:
        a bool, or an awaitable of one while the password is hashed off the loop."""
        listener = self.state.listener
        security = self.server.security
        context = security.context_for_listener(listener)
        if context.allow_anonymous or context.passwords is None:
            return True
        tls_info = getattr(self.connection, "tls_info", None)
        if tls_info is not None and tls_info.peer_cert is not None and listener.require_certificate:
            return True  # a client certificate verified by the listener's CA
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            username, sep, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        return security.verify_password(listener, username, password.encode("utf-8"),
                                        address=peer_host(self.connection.peer))

    def _answer(self, code: int, reason: str, body: str, content_type: str = "text/plain; charset=utf-8",
                extra: str = "", head_only: bool = False) -> None:
        payload = body.encode("utf-8")
        head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n"
                f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n\r\n")
        self.out = head.encode("latin-1") + (b"" if head_only else payload)
        self.closed_by_peer = True
        self.buffer = b""

    def data_to_send(self) -> bytes:
        out, self.out = self.out, b""
        return out

    def send(self, data: bytes) -> None:  # nothing above this stage
        pass

    def close(self) -> None:
        pass
