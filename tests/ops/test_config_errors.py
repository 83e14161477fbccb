"""`midge broker` reports every config error at once, as `midge check` does (issue 13)."""

import subprocess
import sys


def test_broker_prints_every_config_error_not_only_the_first(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 1883\nmax_inflight_messages lots\nsys_interval -1\nno_such_option 1\n")
    r = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    for line, option in ((2, "max_inflight_messages"), (3, "sys_interval"), (4, "no_such_option")):
        assert f"Error: {conf}:{line}: {option}:" in r.stderr, r.stderr
    assert "3 errors in the configuration" in r.stderr
    check = subprocess.run([sys.executable, "-m", "midge", "check", str(conf)],
                           capture_output=True, text=True, timeout=30)
    broker_errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    check_errors = [line for line in check.stdout.splitlines() if line.startswith("Error: ")]
    assert broker_errors == check_errors
