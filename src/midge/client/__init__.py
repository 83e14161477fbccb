"""midge's MQTT client: what `midge pub/sub/rr` are built on, and bridges reuse.

- `session.ClientSession(connect_packet, trace=None)`: sans-I/O MQTT client state
  (packet ids, QoS 1/2 both ways, receive maximum, keepalive). `start(now)`,
  `publish()`, `publish_batch()`, `subscribe()`, `unsubscribe()`, `disconnect()`;
  `feed(data, now)` + `next_event()` (or `receive_data(data, now) -> events`);
  `data_to_send(now) -> list[bytes]`; `next_deadline()` / `handle_timer(now)`.
- `options.ClientOptions` / `options.TlsOptions`: where and how to connect.
- `connection.open_connection(options, session, on_event) -> ClientConnection`:
  the asyncio driver (TCP, Unix socket, TLS, PSK, WebSocket). `await conn.connack`,
  `conn.flush()`, `await conn.drain()`, `conn.close()`, `await conn.closed`.
- `tls.make_context(TlsOptions)` and `tls.explain(exc, host, der)`: client TLS and
  readable failures.
- `reasons.reason_string` / `reasons.connack_string`: Mosquitto's wording of a
  refusal, for the tools and for bridges.
- `tool.Tool`: the run loop of the command-line tools (exit codes, -W, reconnects).

Nothing is imported here so that `midge.client.session` stays free of asyncio.
"""
