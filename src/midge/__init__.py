"""midge: an MQTT broker that reads mosquitto.conf and does TLS well."""

__version__ = "0.1.0"
