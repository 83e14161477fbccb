import pytest

from tests.brokerproc import free_port, start_midge, start_mosquitto

LOGGING = "log_dest stderr\nlog_type all\n"


@pytest.fixture(scope="module", params=["mosquitto", "midge"])
def broker(request, tmp_path_factory):
    """A broker with anonymous access and a full log (tests wait for its SUBACK lines):
    Debian's mosquitto, then midge's own."""
    port = free_port()
    tmp = tmp_path_factory.mktemp(request.param)
    config = f"listener {port} 127.0.0.1\nallow_anonymous true\n{LOGGING}"
    if request.param == "mosquitto":
        process = start_mosquitto(config, tmp, port)
    else:
        process = start_midge(config, tmp, port)
    process.port = port
    process.kind = request.param
    yield process
    process.stop()
