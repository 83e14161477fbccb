import pytest

from tests.brokerproc import free_port, start_mosquitto


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Debian's mosquitto with anonymous access and a full log (to see SUBACKs)."""
    port = free_port()
    tmp = tmp_path_factory.mktemp("mosquitto")
    broker = start_mosquitto(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type all\n",
        tmp, port)
    broker.port = port
    yield broker
    broker.stop()
