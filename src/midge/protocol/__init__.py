"""Sans-I/O MQTT 3.1 / 3.1.1 / 5.0: bytes <-> packet objects, properties, reason codes, topic rules."""
