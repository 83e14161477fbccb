"""`midge check` marks what Mosquitto 2.0 would refuse or read differently (issue 13)."""

from __future__ import annotations

import subprocess
import sys

from tests.brokerproc import free_port, start_midge
from tests.certs import make_pki


def check(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midge", "check", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_check_marks_midge_only_lines_and_options_read_differently(tmp_path):
    (tmp_path / "auth.py").write_text("")
    conf = tmp_path / "m.conf"
    conf.write_text("listener 9234 127.0.0.1\n"       # 1
                    "protocol metrics\n"              # 2 midge-only value
                    "listener 1883\n"                 # 3
                    "allow_anonymous true\n"          # 4
                    "cert_identity_as_username cn\n"  # 5 midge-only option
                    "keyform pem\n"                   # 6 Mosquitto: unknown option
                    "require_ocsp false\n"            # 7 midge-only option
                    "max_qos 1\n"                     # 8 read differently (kept on SIGHUP)
                    f"plugin {tmp_path}/auth.py\n"    # 9 a Python plugin
                    "user mosquitto\n")               # 10 read differently
    result = check(conf)
    out = result.stdout
    assert result.returncode == 0, out
    for line, option in ((2, "protocol"), (5, "cert_identity_as_username"), (6, "keyform"),
                         (7, "require_ocsp"), (9, "plugin")):
        assert f"Midge-only: {conf}:{line}: {option}: Mosquitto 2.0 would refuse this line" in out, (option, out)
    for line, option in ((8, "max_qos"), (10, "user")):
        assert f"Differs: {conf}:{line}: {option}: Mosquitto 2.0 reads this differently" in out, (option, out)
    for line in (1, 3, 4):
        assert f"{conf}:{line}:" not in out  # plain Mosquitto lines are not marked
    strict = check("--mosquitto", conf)
    assert strict.returncode == 3
    assert f"Error: {conf}:2: protocol: Mosquitto 2.0 would refuse this line" in strict.stdout
    assert "5 errors; Mosquitto 2.0 would refuse to start." in strict.stdout


def test_a_portable_config_has_no_marks(tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("listener 1883\nallow_anonymous true\nsys_interval 10\n")
    result = check("--mosquitto", conf)
    assert result.returncode == 0
    assert "Midge-only" not in result.stdout and "Differs" not in result.stdout


def test_require_ocsp_without_any_responder_warns_in_check_and_at_start(tmp_path):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    conf_text = (f"listener {port} 127.0.0.1\nallow_anonymous true\ncertfile {pki.server_cert}\n"
                 f"keyfile {pki.server_key}\ncafile {pki.ca_cert}\nrequire_certificate true\n"
                 "require_ocsp true\n")
    conf = tmp_path / "m.conf"
    conf.write_text(conf_text)
    out = check(conf).stdout
    assert f"Warning: {conf}:7: require_ocsp: listener {port} on 127.0.0.1: require_ocsp true but no OCSP " \
           "responder is known" in out
    broker = start_midge(conf_text, tmp_path, port)
    try:
        line = broker.wait_for_log("no OCSP responder is known")
        assert ":7: listener" in line and "will be refused" in line
    finally:
        broker.stop()
    # A responder named in the config (or in the certificates' AIA) silences it.
    conf.write_text(conf_text + "ocsp_responder http://127.0.0.1:1/\n")
    assert "no OCSP responder" not in check(conf).stdout
    ca_with_aia, _ = pki.client("aia", ocsp_url="http://127.0.0.1:1/")
    conf.write_text(conf_text.replace(f"cafile {pki.ca_cert}", f"cafile {ca_with_aia}"))
    assert "no OCSP responder" not in check(conf).stdout


def test_portability_notes_come_from_the_option_table():
    from midge.config import read_config_string
    from midge.config.options import DIFFERS, MIDGE_ONLY

    result = read_config_string("listener 1883\nprotocol metrics\nkeyform pem\nplugin mypkg.auth\n"
                                "plugin /usr/lib/auth.so\nmax_qos 1\nsys_interval 5\n", "m.conf")
    marks = {text.split(": ")[0] + ": " + text.split(": ")[1]: kind for kind, text in result.portability}
    assert marks == {"m.conf:2: protocol": MIDGE_ONLY, "m.conf:3: keyform": MIDGE_ONLY,
                     "m.conf:4: plugin": MIDGE_ONLY, "m.conf:6: max_qos": DIFFERS}
