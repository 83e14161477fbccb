"""The fuzz campaign's budget and its corpus of past crashers (issue 14).

`make test` runs every fuzz target briefly; `make fuzz` (or MIDGE_FUZZ_SECONDS=N) runs
each target for N seconds instead:

    make fuzz                                   # 600 s per target
    make fuzz FUZZ_SECONDS=3600
    MIDGE_FUZZ_SECONDS=60 .venv/bin/python -m pytest -q tests/fuzz -k network

Every run first replays `corpus/<target>/`: inputs that once crashed or stalled midge,
kept so they never do again. A target that finds a new failure writes it there as
`found-latest.*` (Hypothesis targets: the shrunk example; the network fuzzer: the batch
of connections that made the broker log an internal error) and fails; commit it under
a name saying what it found, with the fix.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

CORPUS = Path(__file__).resolve().parent / "corpus"

SECONDS = float(os.environ.get("MIDGE_FUZZ_SECONDS") or 0)
LONG = SECONDS > 0
BRIEF_SECONDS = 4.0   # the network fuzzer's share of `make test`


def seconds() -> float:
    """How long a time-bounded target runs now."""
    return SECONDS if LONG else BRIEF_SECONDS


def timeout_mark():
    """pytest-timeout for a target: its budget plus room to start and check."""
    return pytest.mark.timeout(seconds() + 120)


def hypothesis_settings(brief_examples: int):
    """`brief_examples` per run in `make test`; batches of 1,000 in a long run, repeated
    until the budget is spent (see `until_spent`)."""
    return settings(max_examples=1000 if LONG else brief_examples, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def until_spent(run) -> None:
    """Call a Hypothesis test once (brief), or again and again for SECONDS (long):
    each call is a fresh search with a new random seed."""
    run()
    if LONG:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            run()


def corpus(target: str, suffix: str) -> list[Path]:
    """The corpus files of `target`, for pytest parametrisation (ids: file names)."""
    return sorted((CORPUS / target).glob(f"*{suffix}"))


def save_found(target: str, suffix: str, content: str | bytes | dict) -> Path:
    """Write a failing input as corpus/<target>/found-latest<suffix> (overwritten: a
    shrinking search leaves its smallest example)."""
    path = CORPUS / target / f"found-latest{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        path.write_text(json.dumps(content, indent=1) + "\n")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path
