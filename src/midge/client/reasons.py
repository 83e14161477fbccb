"""How a refused or failed MQTT exchange is worded, Mosquitto's way.

Shared by the command-line tools (`client/tool.py`, `cli/pub.py`) and bridges
(`bridge/rules.py`, `bridge/link.py`), so a refusal reads the same wherever midge is the
client.
"""

from __future__ import annotations

from midge.protocol.constants import ReasonCode

# MQTT 3.1/3.1.1 CONNACK return codes, as mosquitto's clients print them.
CONNACK_V3 = {
    1: "Connection Refused: unacceptable protocol version.",
    2: "Connection Refused: identifier rejected.",
    3: "Connection Refused: broker unavailable.",
    4: "Connection Refused: bad user name or password.",
    5: "Connection Refused: not authorised.",
}


def reason_string(code: int) -> str:
    """Mosquitto's wording of a v5 reason code ("Not authorized")."""
    try:
        name = ReasonCode(code).name
    except ValueError:
        return "Unknown reason"
    return name.replace("_", " ").capitalize().replace("qos", "QoS")


def connack_string(version: int, code: int) -> str:
    """A refused CONNACK: the v5 reason, or the v3 sentence (with its full stop)."""
    if version == 5:
        return reason_string(code)
    return CONNACK_V3.get(code, "Connection Refused: unknown reason.")
