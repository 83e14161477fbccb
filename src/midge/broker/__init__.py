"""The sans-I/O broker core: MQTT semantics without sockets or clocks.

`Broker` owns sessions, the subscription tree, retained messages and timers;
`Client` is one connection. See docs/architecture.md for the server contract.
"""

from midge.broker.broker import Broker
from midge.broker.client import Client

__all__ = ["Broker", "Client"]
