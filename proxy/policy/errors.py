"""Problems found in policy files, and the error that carries them.

A policy that has any problem is never loaded: `load_policy` raises `PolicyError` with every
problem it found, each pointing at a file, a line and (when known) a rule id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy file. `message` is short and never holds evaluation data."""

    file: str
    line: int | None
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        rule = f" rule {self.rule_id!r}:" if self.rule_id else ""
        return f"{where}:{rule} {self.message}"


class PolicyError(Exception):
    """A policy failed validation; `problems` lists why, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in policy"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))
