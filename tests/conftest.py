import pytest

from tests.brokerproc import free_port, start_midge


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def midge(tmp_path, port):
    """A midge broker on `port` with anonymous access; yields the BrokerProcess."""
    broker = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\n", tmp_path, port)
    yield broker
    broker.stop()
