"""Find the exercise regions in source files and replace them by stubs.

A graded exercise in library code looks like this (the nbgrader markers)::

    def backward(ctx, g):
        a, b = ctx.saved_tensors
        # Exercise 0.1 (1 pt): the backward of the product y = a * b.
        #   (the task may continue on further comment lines)
        <BEGIN marker>
        grad_a = g * b
        grad_b = g * a
        <END marker>
        return grad_a, grad_b

where the markers are the comment lines ``### BEGIN SOLUTION`` and ``### END SOLUTION``.
The release replaces everything from the BEGIN line to the END line (both included) by one line
at the indentation of the BEGIN marker::

        raise NotImplementedError("Exercise 0.1: the backward of the product y = a * b.")

so the region must be a contiguous block of statements inside a function body. The header
comment stays, so a released file still names its exercises: :func:`parse_source` recognises
both a solution region and its released stub.

Errors (:class:`ExerciseMarkerError`, a ``ValueError``) name the file and the line: a region
without its header comment, an unterminated region, a region inside a region, an END without a
BEGIN, an END at another indentation than its BEGIN, a solution line indented less than its
BEGIN, and one exercise id declared with two different point values.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# Spelled in two pieces so that this file itself never contains a marker line.
BEGIN = "### BEGIN " + "SOLUTION"
END = "### END " + "SOLUTION"

_ID = r"\d+(?:\.\d+)+|\d+"
HEADER_RE = re.compile(
    rf"^\s*#\s*Exercise\s+(?P<id>{_ID})\s*\(\s*(?P<points>\d+(?:\.\d+)?)\s*pts?\s*\)\s*:\s*"
    r"(?P<task>.*?)\s*$"
)
STUB_RE = re.compile(r"^(?P<indent>\s*)raise NotImplementedError\(\s*[\"']Exercise (?P<id>[\d.]+):")
ID_RE = re.compile(rf"^(?:{_ID})$")


class ExerciseMarkerError(ValueError):
    """A malformed exercise region; the message names the file and the line."""


@dataclass(frozen=True)
class Region:
    """One exercise region (or its released stub) in one file.

    ``begin`` and ``end`` are 1-based line numbers of the BEGIN and END markers (for a stub both
    are the line of the ``raise``); ``header_line`` is the line of the ``# Exercise`` comment.
    """

    id: str
    points: float
    task: str
    path: str
    header_line: int
    begin: int
    end: int
    indent: str
    released: bool = False

    @property
    def location(self) -> str:
        return f"{self.path}:{self.header_line}"

    def stub_line(self) -> str:
        """The line that replaces the region in the student copy."""
        message = json.dumps(f"Exercise {self.id}: {self.task}", ensure_ascii=False)
        return f"{self.indent}raise NotImplementedError({message})\n"


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _is_marker(line: str, marker: str) -> bool:
    return line.strip().startswith(marker)


def _header_above(lines: list[str], i: int, path: str) -> tuple[int, str, float, str]:
    """The ``# Exercise`` comment block that ends right above line index ``i``.

    Returns (header index, id, points, task). The task is the header's text plus any comment
    lines between the header and line ``i``.
    """
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("#") and not HEADER_RE.match(lines[j]):
        if _is_marker(lines[j], BEGIN) or _is_marker(lines[j], END):
            break
        j -= 1
    if j < 0 or not HEADER_RE.match(lines[j]):
        raise ExerciseMarkerError(
            f"{path}:{i + 1}: solution region without its header comment; expected a line like "
            f"'# Exercise 1.2 (2 pt): <task>' right above it (continuation lines may follow)"
        )
    m = HEADER_RE.match(lines[j])
    more = [lines[k].strip().lstrip("#").strip() for k in range(j + 1, i)]
    task = " ".join([m["task"], *[t for t in more if t]]).strip()
    return j, m["id"], float(m["points"]), task


def parse_source(text: str, path: str = "<string>") -> list[Region]:
    """All exercise regions and released stubs of one source file, in file order."""
    lines = text.splitlines(keepends=True)
    regions: list[Region] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_marker(line, END):
            raise ExerciseMarkerError(f"{path}:{i + 1}: '{END}' without a '{BEGIN}' before it")
        stub = STUB_RE.match(line)
        if stub and i > 0 and lines[i - 1].strip().startswith("#"):
            try:
                h, ex_id, points, task = _header_above(lines, i, path)
            except ExerciseMarkerError:
                h = None
            if h is not None and ex_id == stub["id"]:
                regions.append(Region(ex_id, points, task, path, h + 1, i + 1, i + 1,
                                      stub["indent"], released=True))
            i += 1
            continue
        if not _is_marker(line, BEGIN):
            i += 1
            continue
        h, ex_id, points, task = _header_above(lines, i, path)
        indent = _indent_of(line)
        k = i + 1
        while k < len(lines) and not _is_marker(lines[k], END):
            body = lines[k]
            if _is_marker(body, BEGIN):
                raise ExerciseMarkerError(
                    f"{path}:{k + 1}: '{BEGIN}' inside the region of exercise {ex_id} opened at "
                    f"line {i + 1}; regions cannot nest"
                )
            if body.strip() and len(_indent_of(body)) < len(indent):
                raise ExerciseMarkerError(
                    f"{path}:{k + 1}: line of exercise {ex_id} is indented less than its "
                    f"'{BEGIN}' (line {i + 1}); the region must be one block of statements"
                )
            k += 1
        if k == len(lines):
            raise ExerciseMarkerError(
                f"{path}:{i + 1}: unterminated region of exercise {ex_id}: no '{END}' after it"
            )
        if _indent_of(lines[k]) != indent:
            raise ExerciseMarkerError(
                f"{path}:{k + 1}: '{END}' of exercise {ex_id} is not at the indentation of its "
                f"'{BEGIN}' (line {i + 1})"
            )
        regions.append(Region(ex_id, points, task, path, h + 1, i + 1, k + 1, indent))
        i = k + 1
    return regions


def strip_solutions(text: str, path: str = "<string>") -> tuple[str, list[Region]]:
    """``text`` with every solution region replaced by its ``raise NotImplementedError`` stub."""
    regions = [r for r in parse_source(text, path) if not r.released]
    if not regions:
        return text, []
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    prev = 0
    for r in regions:
        out.extend(lines[prev: r.begin - 1])
        out.append(r.stub_line())
        prev = r.end
    out.extend(lines[prev:])
    return "".join(out), regions


def check_consistent(regions: list[Region]) -> None:
    """Raise if one exercise id is declared with different point values."""
    seen: dict[str, Region] = {}
    for r in regions:
        first = seen.setdefault(r.id, r)
        if first.points != r.points:
            raise ExerciseMarkerError(
                f"{r.location}: exercise {r.id} is worth {r.points:g} pt here but "
                f"{first.points:g} pt at {first.location}"
            )


def scan_files(root: Path, files: list[str]) -> list[Region]:
    """Regions in the ``.py`` files among ``files`` (paths relative to ``root``)."""
    regions: list[Region] = []
    for rel in files:
        if not rel.endswith(".py"):
            continue
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "Exercise" in text or "SOLUTION" in text:
            regions.extend(parse_source(text, rel))
    check_consistent(regions)
    return regions


def sort_key(ex_id: str) -> tuple:
    """Order ids numerically: 0.2 < 0.10 < 1.1 < 10.2."""
    return tuple(int(p) for p in ex_id.split("."))
