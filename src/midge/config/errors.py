"""ConfigError: what is wrong in a config file, and where."""

from __future__ import annotations


class ConfigError(Exception):
    """A config error; `str()` is `FILE:LINE: OPTION: what is wrong, what is expected`.

    `errors` holds every error found in the same read (this one first), so a caller
    such as `midge check` can show them all; `warnings` the non-fatal findings.
    """

    def __init__(self, message: str, file: str | None = None, line: int = 0, option: str = ""):
        self.message = message
        self.file = file
        self.line = line
        self.option = option
        self.errors: list[ConfigError] = [self]
        self.warnings: list[str] = []
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.option:
            parts.append(self.option)
        parts.append(self.message)
        return ": ".join(parts)
