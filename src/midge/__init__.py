"""midge: an MQTT broker that reads mosquitto.conf and does TLS well.

The public Python API is what this module exports (`midge.Broker` and its companions,
see docs/embedding.md); everything under midge.* is internal and may change.
Importing `midge` stays cheap: the names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["Broker", "BrokerError", "ConfigError", "Listener", "Message", "Messages", "Subscription",
           "__version__"]

if TYPE_CHECKING:
    from midge.config.errors import ConfigError
    from midge.embed import Broker, BrokerError, Listener, Message, Messages, Subscription


def __getattr__(name: str):
    if name == "ConfigError":
        from midge.config.errors import ConfigError

        return ConfigError
    if name in __all__:
        from midge import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'midge' has no attribute {name!r}")
