"""Errors shown to users as one clear line, never as a traceback from deep inside."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from os import PathLike

__all__ = ["TedlocError", "DataError", "OptionError", "Problem", "cap_problems"]

PROBLEMS_PER_FILE = 5


class TedlocError(Exception):
    """Base class of the errors the CLI prints without a traceback."""


class OptionError(TedlocError, ValueError):
    """A setting outside what it accepts: one line on the command line, a ``ValueError`` in Python."""


@dataclass(frozen=True)
class Problem:
    """One problem found in user input: where it is and what is wrong."""

    message: str
    path: str | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


def cap_problems(problems: list[Problem], per_file: int = PROBLEMS_PER_FILE) -> list[Problem]:
    """The first ``per_file`` problems of each file, then one ``... and N more problems in FILE``."""
    total = Counter(p.path for p in problems)
    seen: Counter = Counter()
    capped = []
    for p in problems:
        seen[p.path] += 1
        if seen[p.path] <= per_file:
            capped.append(p)
        elif seen[p.path] == per_file + 1:
            where = f" in {p.path}" if p.path is not None else ""
            capped.append(Problem(f"... and {total[p.path] - per_file} more problems{where}"))
    return capped


class DataError(TedlocError):
    """Bad input data, naming the file, the line and the field.

    Args:
        message: what is wrong, in words a user can act on.
        path: the file concerned.
        line: 1-based line number in that file.
        field: the field (column) concerned.
        problems: further problems of the same input, shown after the first.
    """

    def __init__(
        self,
        message: str,
        path: str | PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
        problems: list[Problem] | None = None,
    ):
        self.problem = Problem(message, None if path is None else str(path), line, field)
        self.problems = [self.problem] + list(problems or [])
        super().__init__(str(self))

    @classmethod
    def from_problems(cls, problems: list[Problem], limit: int = 20) -> "DataError":
        """One error listing ``problems`` (at most ``PROBLEMS_PER_FILE`` per file, ``limit`` in all)."""
        first, *rest = cap_problems(problems)
        err = cls(first.message, first.path, first.line, first.field, problems=rest)
        err.limit = limit
        return err

    def __str__(self) -> str:
        limit = getattr(self, "limit", 20)
        lines = [str(p) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more problems (run `tedloc data check`)")
        return "\n".join(lines)
