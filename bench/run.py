"""Run the benchmark scenarios against midge and Debian's mosquitto, side by side.

    make bench                      # every scenario, 3 repetitions
    make bench ARGS="--quick"       # 1 repetition, smaller sizes
    .venv/bin/python bench/run.py --scenario qos0 --scenario fanout --brokers midge,mosquitto

Each scenario runs on a fresh broker process; the brokers alternate within a scenario.
Prints a markdown table of medians and midge/mosquitto ratios and writes every result
as JSON lines to bench/results/<timestamp>.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from brokers import BROKERS, Broker, BrokerFailed, free_port, mosquitto_exe  # noqa: E402
from certs import make_pki, write_psk_file  # noqa: E402
from scenarios import SCENARIOS, Assets, Run, broker_config, write_password_file  # noqa: E402

REFERENCE = "mosquitto"


def ensure_tools() -> None:
    """Install mosquitto and its clients with apt when missing (as root), else explain."""
    missing = [t for t in ("mosquitto_pub", "mosquitto_sub") if not shutil.which(t)]
    if mosquitto_exe() is None:
        missing.append("mosquitto")
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {', '.join(missing)} with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "mosquitto", "mosquitto-clients"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        return
    sys.exit(f"bench needs {', '.join(missing)}: install the Debian packages "
             "'mosquitto' and 'mosquitto-clients' (apt-get install mosquitto "
             "mosquitto-clients) or run as root so bench/run.py installs them")


def raise_fd_limit() -> None:
    """10,000 idle connections need more descriptors than the usual soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> dict:
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    model = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(),
            "mosquitto": first_line([mosquitto_exe() or "mosquitto", "-h"]),
            "midge_commit": first_line(["git", "-C", str(HERE.parent), "rev-parse",
                                        "--short", "HEAD"])}


def use_midge_revision(rev: str, root: Path) -> str:
    """Export `rev`'s src/ and put it first on the brokers' PYTHONPATH.

    The working tree may hold other people's unfinished edits; a revision is what landed.
    """
    tree = root / "midge-src"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tree / "src"), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", rev],
                          capture_output=True, text=True, check=True).stdout.strip()


def run_once(scenario, broker_name: str, size: int, assets: Assets, root: Path,
             rep: int, timeout: float, profile_dir: Path | None = None) -> dict[str, dict]:
    workdir = root / f"{scenario.name}-{broker_name}-{rep}"
    workdir.mkdir(mode=0o777)
    workdir.chmod(0o777)  # the broker may run as another user and writes its files here
    port = free_port()
    config = broker_config(port, scenario.listener(assets))
    try:
        profile_to = None
        if profile_dir is not None and broker_name == "midge":
            profile_to = profile_dir / f"{scenario.name}-{rep}.txt"
        broker = Broker(broker_name, config, workdir, port, profile_to=profile_to)
    except BrokerFailed as exc:
        return {scenario.name: {"ok": False, "error": str(exc)[:400]}}
    run = Run(broker, port, workdir, assets, size, timeout)
    try:
        rows = scenario.run(run)
        if not broker.alive():
            raise RuntimeError("broker died: " + broker.log_tail())
    except Exception as exc:  # a failed run is a result too; the suite goes on
        rows = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
    finally:
        run.cleanup()
        broker.stop()
    return rows if all(isinstance(v, dict) for v in rows.values()) else {scenario.name: rows}


def median(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get("ok") and r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}"


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def table(results: dict, brokers: list[str], units: dict) -> str:
    """Markdown table: medians per broker and midge/mosquitto ratios."""
    others = [b for b in brokers if b != REFERENCE] if REFERENCE in brokers else []
    head = ["scenario", "work"]
    for b in brokers:
        head += [f"{b} /CPU-s", f"{b} /s"]
    for b in others:
        head += [f"{b}/{REFERENCE} CPU", f"{b}/{REFERENCE} wall"]
    for b in brokers:
        head += [f"{b} peak MiB", f"{b} KiB/item"]
    head.append("failures")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row_name, per_broker in results.items():
        med = {b: {k: median(per_broker.get(b, []), k)
                   for k in ("work", "per_cpu_s", "per_wall_s", "hwm_kib",
                             "kib_per_conn", "kib_per_item")} for b in brokers}
        cells = [row_name, f"{fmt(med[brokers[0]]['work'] or med[brokers[-1]]['work'])} "
                           f"{units.get(row_name, '')}"]
        for b in brokers:
            cells += [fmt(med[b]["per_cpu_s"]), fmt(med[b]["per_wall_s"])]
        for b in others:
            cells += [ratio(med[b]["per_cpu_s"], med[REFERENCE]["per_cpu_s"]),
                      ratio(med[b]["per_wall_s"], med[REFERENCE]["per_wall_s"])]
        for b in brokers:
            hwm = med[b]["hwm_kib"]
            per_item = med[b]["kib_per_conn"] or med[b]["kib_per_item"]
            cells += [fmt(hwm / 1024, 1) if hwm else "-", fmt(per_item, 2)]
        failed = [f"{b}: {r.get('error', 'count mismatch')}"[:120]
                  for b in brokers for r in per_broker.get(b, []) if not r.get("ok")]
        cells.append("; ".join(sorted(set(failed))) or "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller sizes")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="run only this scenario (repeatable): "
                             + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--brokers", default="midge,mosquitto",
                        help="comma-separated, from: " + ", ".join(BROKERS))
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds before one scenario run is abandoned")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every size (e.g. 5: CPU windows 5x longer, so the 10 ms "
                             "clock tick weighs 5x less when comparing two revisions)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--midge-rev", metavar="REV",
                        help="run midge from this git revision (git archive into the "
                             "working directory) instead of the working tree")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="sample midge with py-spy into DIR/<scenario>-<rep>.txt "
                             "(collapsed stacks; CPU figures of such a run are inflated)")
    args = parser.parse_args(argv)

    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = [b for b in brokers if b not in BROKERS]
    known = {s.name for s in SCENARIOS}
    wrong = [s for s in args.scenario or [] if s not in known]
    if unknown or wrong:
        parser.error(f"unknown broker(s) {unknown} or scenario(s) {wrong}")
    repeat = args.repeat or (1 if args.quick else 3)
    selected = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    if args.quick:
        selected = [s for s in selected if s.quick is not None]

    ensure_tools()
    raise_fd_limit()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="midge-bench-"))
    # Mosquitto started as root drops to the 'mosquitto' user: it must read our files.
    root.chmod(0o755)
    assets = Assets(pki={k: make_pki(root / "pki", k) for k in ("rsa2048", "p256")},
                    psk_file=write_psk_file(root))
    if any(s.name == "login-attack" for s in selected):
        assets.password_file = write_password_file(root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    out_path = results_dir / f"{stamp}.jsonl"
    info = machine()
    if args.midge_rev:
        info["midge_commit"] = use_midge_revision(args.midge_rev, root)
    print(f"# {info}", flush=True)

    results: dict[str, dict[str, list]] = {}
    units: dict[str, str] = {}
    try:
        with open(out_path, "w") as out:
            out.write(json.dumps({"type": "machine", **info, "quick": args.quick,
                                  "repeat": repeat, "scale": args.scale}) + "\n")
            for scenario in selected:
                size = round((scenario.quick if args.quick else scenario.full) * args.scale)
                for rep in range(repeat):
                    order = brokers if rep % 2 == 0 else brokers[::-1]
                    for broker_name in order:
                        rows = run_once(scenario, broker_name, size, assets, root, rep,
                                        args.timeout, args.profile)
                        for row_name, row in rows.items():
                            units[row_name] = scenario.unit
                            results.setdefault(row_name, {}).setdefault(broker_name, []).append(row)
                            record = {"type": "result", "scenario": row_name,
                                      "broker": broker_name, "rep": rep, "size": size, **row}
                            out.write(json.dumps(record) + "\n")
                            out.flush()
                            print(f"{row_name:26} {broker_name:10} rep {rep}: "
                                  f"{fmt(row.get('per_cpu_s'))}/CPU-s "
                                  f"{fmt(row.get('per_wall_s'))}/s "
                                  f"{'ok' if row.get('ok') else 'FAILED ' + str(row.get('error', 'count mismatch'))}",
                                  flush=True)
            summary = table(results, brokers, units)
            out.write(json.dumps({"type": "table", "markdown": summary}) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(summary)
    print(f"\nresults: {out_path}")
    failed = any(not r.get("ok") for per in results.values() for rows in per.values()
                 for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
