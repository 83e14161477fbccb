"""Bridges without I/O: what the `connection` options decide (`rules`) and the local
end, a client of midge's own broker (`link`). The asyncio runner that connects to
the remote broker and keeps the timers is `midge.server.bridge`.

Nothing here imports asyncio, socket or ssl (`tests/test_layering.py`).
"""
