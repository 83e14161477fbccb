"""The sans-I/O layers must not import asyncio, socket or ssl (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "midge"
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop"}
SANS_IO = ["protocol", "broker", "config", "security", "persist", "bridge"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", SANS_IO)
def test_sans_io_packages_do_no_io(package):
    offenders = {}
    for path in sorted((SRC / package).rglob("*.py")):
        bad = imported_modules(path) & FORBIDDEN
        if bad:
            offenders[str(path.relative_to(SRC))] = sorted(bad)
    assert not offenders, f"sans-I/O modules import I/O libraries: {offenders}"
