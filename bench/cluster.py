"""Cluster benchmarks (issue 10): two midge nodes on one nats-server, and `workers 2`,
each against single-node midge measured in the same run.

    .venv/bin/python bench/cluster.py --quick            # 10k messages, 3 repetitions
    .venv/bin/python bench/cluster.py --scenario cross-qos0 --repeat 5
    .venv/bin/python bench/cluster.py --scenario same-node-qos0 --scale 5   # 500k messages
    .venv/bin/python bench/cluster.py --scenario cross-qos0 --repeat 1 --profile /tmp/prof
        # py-spy on every midge node: /tmp/prof/<scenario>-<system>-<node>-<rep>.txt,
        # read with bench/profile_summary.py

Same method as run.py: a fresh system per run, the two systems alternate within a
scenario, the same mosquitto.conf apart from the cluster lines, the same checked
`pubsub` and `idle` scenarios (every payload checked, every PUBACK matched by a
delivery). The CPU of a system is the sum over ALL its processes: every midge node (or
the supervisor and its workers) and the nats-server. Each row also says how that CPU
split between the processes, in microseconds per unit of work: the per-message costs
docs/cluster.md builds its model on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from brokers import CLOCK_TICKS, Broker, BrokerFailed, free_port  # noqa: E402
from certs import make_pki, write_psk_file  # noqa: E402
from run import ensure_tools, fmt, machine, raise_fd_limit  # noqa: E402
from scenarios import Assets, Run, broker_config, idle, pubsub  # noqa: E402

from midge.server.natsproc import NatsServer, find_nats_server  # noqa: E402


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime seconds) of a live process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (workers, the embedded nats-server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _wait_log(path: Path, text: str, count: int, deadline: float, alive) -> None:
    while True:
        if path.read_text(errors="replace").count(text) >= count:
            return
        if not alive() or time.monotonic() > deadline:
            raise BrokerFailed(f"{text!r} x{count} not in {path.name}: "
                               + " | ".join(path.read_text(errors="replace").splitlines()[-8:]))
        time.sleep(0.05)  # log poll interval


class System:
    """Several processes measured as one broker (the interface scenarios.py uses).

    `cpu_seconds` also keeps the per-process split of each reading, so the split over a
    scenario's window is the difference of the last two readings.
    """

    def __init__(self, nodes: dict[str, Broker], nats: NatsServer | None = None,
                 tree: Broker | None = None):
        self.nodes = nodes
        self.nats = nats
        self.tree = tree          # a `workers N` supervisor: count every descendant
        self.readings: list[dict[str, float]] = []

    def _pids(self) -> dict[int, str]:
        pids = {b.pid: role for role, b in self.nodes.items()}
        if self.nats is not None and self.nats.proc is not None:
            pids[self.nats.proc.pid] = "nats"
        if self.tree is not None:
            for pid in _descendants(self.tree.pid):
                if pid != self.tree.pid:
                    pids[pid] = "nats" if "nats" in _comm(pid) else "workers"
        return pids

    def cpu_parts(self) -> dict[str, float]:
        parts: dict[str, float] = {}
        for pid, role in self._pids().items():
            stat = _stat(pid)
            if stat is not None:
                parts[role] = parts.get(role, 0.0) + stat[1]
        return parts

    def cpu_seconds(self) -> float:
        parts = self.cpu_parts()
        self.readings.append(parts)
        return sum(parts.values())

    def window_split(self) -> dict[str, float]:
        before, after = self.readings[-2], self.readings[-1]
        return {role: round(after[role] - before.get(role, 0.0), 3) for role in after}

    def memory_kib(self) -> dict[str, int]:
        total = {"VmRSS": 0, "VmHWM": 0}
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        if key in total:
                            total[key] += int(value.split()[0])
            except OSError:
                pass
        return total

    def alive(self) -> bool:
        return (all(b.alive() for b in self.nodes.values())
                and (self.nats is None or self.nats.running()))

    def log_tail(self) -> str:
        return " || ".join(f"{role}: {b.log_tail(4)}" for role, b in self.nodes.items())

    def stop(self) -> None:
        for broker in self.nodes.values():
            broker.stop()
        if self.nats is not None:
            self.nats.stop()


# --- the systems under comparison ---------------------------------------------------

# Set by --profile: a folder for py-spy's collapsed stacks of every midge node.
PROFILE_DIR: Path | None = None


def _profile_to(workdir: Path, role: str) -> Path | None:
    if PROFILE_DIR is None:
        return None
    return PROFILE_DIR / f"{workdir.name}-{role}.txt"


def single(workdir: Path, extra: str = "") -> tuple[System, int, int]:
    port = free_port()
    broker = Broker("midge", broker_config(port, "") + extra, workdir, port,
                    profile_to=_profile_to(workdir, "midge"))
    return System({"midge": broker}), port, port


def two_nodes(workdir: Path, same_node: bool) -> tuple[System, int, int]:
    """nats-server + nodes a and b; subscribers on b (on a when `same_node`), publisher on a."""
    nats = NatsServer(str(workdir / "nats"), port=free_port())
    nats.start()
    nodes: dict[str, Broker] = {}
    system = System(nodes, nats)
    try:
        ports = {}
        for node in ("a", "b"):
            ports[node] = free_port()
            folder = workdir / f"node-{node}"
            folder.mkdir()
            folder.chmod(0o777)
            nodes[f"node-{node}"] = Broker(
                "midge", broker_config(ports[node], "") + f"cluster_url {nats.url}\n"
                f"cluster_node_id {node}\n", folder, ports[node],
                profile_to=_profile_to(workdir, f"node-{node}"))
        deadline = time.monotonic() + 20
        for node, other in (("a", "b"), ("b", "a")):
            _wait_log(nodes[f"node-{node}"].log_path, f"node {other} is part of cluster", 1,
                      deadline, system.alive)
    except Exception:
        system.stop()
        raise
    return system, (ports["a"] if same_node else ports["b"]), ports["a"]


def workers(workdir: Path, count: int) -> tuple[System, int, int]:
    port = free_port()
    supervisor = Broker("midge", broker_config(port, "") + f"workers {count}\n", workdir, port)
    system = System({}, tree=supervisor)
    system.nodes["supervisor"] = supervisor
    if count > 1:
        try:   # every worker has seen every other one
            _wait_log(supervisor.log_path, "is part of cluster", count * (count - 1),
                      time.monotonic() + 30, system.alive)
        except Exception:
            system.stop()
            raise
    return system, port, port


@dataclass(frozen=True)
class Scenario:
    name: str
    unit: str
    full: int
    quick: int
    systems: dict[str, Callable[[Path], tuple[System, int, int]]]   # baseline first
    run: Callable[[Run], dict]
    target: str


def _qos(qos: int, subscribers: int = 1):
    return lambda r: pubsub(r, publishers=1, subscribers=subscribers, qos=qos)


SCENARIOS = [
    Scenario("cross-qos0", "msgs", 100_000, 10_000,
             {"1 node": single, "2 nodes, pub a -> sub b": lambda w: two_nodes(w, False)},
             _qos(0), "CPU >= 0.5"),
    Scenario("cross-qos1", "msgs", 100_000, 10_000,
             {"1 node": single, "2 nodes, pub a -> sub b": lambda w: two_nodes(w, False)},
             _qos(1), "CPU >= 0.4"),
    Scenario("same-node-qos0", "msgs", 100_000, 10_000,
             {"1 node": single, "2 nodes, pub a -> sub a": lambda w: two_nodes(w, True)},
             _qos(0), "CPU >= 0.9"),
    Scenario("workers-fanout", "deliveries", 100_000, 10_000,
             {"workers 1": lambda w: workers(w, 1), "workers 2": lambda w: workers(w, 2)},
             _qos(0, subscribers=10), "wall, reported"),
    Scenario("workers-connects", "connects", 10_000, 1_000,
             {"workers 1": lambda w: workers(w, 1), "workers 2": lambda w: workers(w, 2)},
             idle, "wall, reported"),
]


def run_once(scenario: Scenario, label: str, size: int, assets: Assets, root: Path,
             rep: int, timeout: float) -> dict:
    workdir = root / f"{scenario.name}-{label.split(',')[0].replace(' ', '')}-{rep}"
    workdir.mkdir(mode=0o777)
    try:
        system, port, pub_port = scenario.systems[label](workdir)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
    run = Run(system, port, workdir, assets, size, timeout, pub_port=pub_port)
    try:
        row = scenario.run(run)
        row["split_cpu_s"] = system.window_split()
        if not system.alive():
            raise RuntimeError("a process died: " + system.log_tail())
    except Exception as exc:
        row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
    finally:
        run.cleanup()
        system.stop()
    return row


def _median(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get("ok") and r.get(key) is not None]
    return statistics.median(values) if values else None


def _split(rows: list[dict]) -> str:
    """Median microseconds of CPU per unit of work, per process role."""
    roles = sorted({role for r in rows if r.get("ok") for role in r.get("split_cpu_s", {})})
    cells = []
    for role in roles:
        per = [r["split_cpu_s"].get(role, 0.0) / r["work"] * 1e6 for r in rows if r.get("ok")]
        cells.append(f"{role} {statistics.median(per):.1f}")
    return ", ".join(cells) or "-"


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    head = ["scenario", "work", "baseline", "baseline /CPU-s", "baseline /s", "cluster",
            "cluster /CPU-s", "cluster /s", "CPU ratio", "wall ratio", "target",
            "µs CPU per unit: baseline", "µs CPU per unit: cluster", "failures"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in SCENARIOS:
        if scenario.name not in results:
            continue
        per = results[scenario.name]
        base, other = list(scenario.systems)
        b = {k: _median(per.get(base, []), k) for k in ("work", "per_cpu_s", "per_wall_s")}
        o = {k: _median(per.get(other, []), k) for k in ("work", "per_cpu_s", "per_wall_s")}
        ratio = lambda x, y: f"{x / y:.2f}" if x and y else "-"   # noqa: E731
        failed = sorted({f"{label}: {r.get('error', 'count mismatch')}"[:120]
                         for label, rows in per.items() for r in rows if not r.get("ok")})
        lines.append("| " + " | ".join([
            scenario.name, f"{fmt(b['work'] or o['work'])} {scenario.unit}",
            base, fmt(b["per_cpu_s"]), fmt(b["per_wall_s"]),
            other, fmt(o["per_cpu_s"]), fmt(o["per_wall_s"]),
            ratio(o["per_cpu_s"], b["per_cpu_s"]), ratio(o["per_wall_s"], b["per_wall_s"]),
            scenario.target, _split(per.get(base, [])), _split(per.get(other, [])),
            "; ".join(failed)]) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="only this scenario (repeatable): "
                             + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every message scenario's size (a longer window: 100,000 QoS 0 "
                             "messages are ~0.3 CPU-s, ~30 clock ticks, so one run's ratio moves by 10 %%)")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="py-spy every midge node into DIR (bench/profile_summary.py reads it)")
    args = parser.parse_args(argv)
    if args.profile:
        global PROFILE_DIR
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile.resolve()
    wrong = [s for s in args.scenario or [] if s not in {s.name for s in SCENARIOS}]
    if wrong:
        parser.error(f"unknown scenario(s) {wrong}")
    ensure_tools()
    find_nats_server()
    raise_fd_limit()
    root = Path(tempfile.mkdtemp(prefix="midge-cluster-bench-"))
    root.chmod(0o755)
    assets = Assets(pki={"p256": make_pki(root / "pki", "p256")}, psk_file=write_psk_file(root))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (HERE / "results").mkdir(exist_ok=True)
    out_path = HERE / "results" / f"cluster-{stamp}.jsonl"
    info = machine()
    print(f"# {info}", flush=True)
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        with open(out_path, "w") as out:
            out.write(json.dumps({"type": "machine", **info, "quick": args.quick,
                                  "repeat": args.repeat, "scale": args.scale}) + "\n")
            for scenario in SCENARIOS:
                if args.scenario and scenario.name not in args.scenario:
                    continue
                size = scenario.quick if args.quick else scenario.full
                if scenario.unit != "connects":   # (30k connects exhaust the local ports)
                    size = round(size * args.scale)
                for rep in range(args.repeat):
                    labels = list(scenario.systems)
                    for label in (labels if rep % 2 == 0 else labels[::-1]):
                        row = run_once(scenario, label, size, assets, root, rep, args.timeout)
                        results.setdefault(scenario.name, {}).setdefault(label, []).append(row)
                        out.write(json.dumps({"type": "result", "scenario": scenario.name,
                                              "system": label, "rep": rep, "size": size,
                                              **row}) + "\n")
                        out.flush()
                        print(f"{scenario.name:18} {label:24} rep {rep}: "
                              f"{fmt(row.get('per_cpu_s'))}/CPU-s {fmt(row.get('per_wall_s'))}/s "
                              f"{row.get('split_cpu_s', '')} "
                              f"{'ok' if row.get('ok') else 'FAILED ' + str(row.get('error', 'count mismatch'))}",
                              flush=True)
            summary = table(results)
            out.write(json.dumps({"type": "table", "markdown": summary}) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(summary)
    print(f"\nresults: {out_path}")
    return 1 if any(not r.get("ok") for per in results.values() for rows in per.values()
                    for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
