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

**Dependencies.** An exercise that calls code of other exercises says so on a comment line right
below its header, ``# Needs: 0.5, 20.1`` (comma-separated ids): its tests cannot pass before
those are done. :attr:`Region.needs` holds them; ``minimem exercises list`` shows them and the
grader names them ("needs 0.5") when such an exercise fails.

**Withheld blocks** (homework mode). Code elsewhere that gives a graded answer away (the fast
twin of a mechanism, a formula in a docstring) sits between ``### BEGIN WITHHELD <ids>`` and
``### END WITHHELD``. A plain release keeps it (and ``exercises list`` marks those exercises as
answered elsewhere); ``release --homework`` replaces the block by its replacement lines, the
lines in it written ``#> <text>`` (e.g. ``#> return reference(x)``: the reference path), or by
nothing.

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
WITHHELD_BEGIN = "### BEGIN " + "WITHHELD"
WITHHELD_END = "### END " + "WITHHELD"
REPLACEMENT = "#>"

_ID = r"\d+(?:\.\d+)+|\d+"
HEADER_RE = re.compile(
    rf"^\s*#\s*Exercise\s+(?P<id>{_ID})\s*\(\s*(?P<points>\d+(?:\.\d+)?)\s*pts?\s*\)\s*:\s*"
    r"(?P<task>.*?)\s*$"
)
STUB_RE = re.compile(r"^(?P<indent>\s*)raise NotImplementedError\(\s*[\"']Exercise (?P<id>[\d.]+):")
ID_RE = re.compile(rf"^(?:{_ID})$")
NEEDS_RE = re.compile(r"^\s*#\s*Needs\s*:\s*(?P<ids>.*?)\s*$")


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
    needs: tuple[str, ...] = ()
    answered: bool = False  # a header whose stub the student has replaced by code

    @property
    def location(self) -> str:
        return f"{self.path}:{self.header_line}"

    @property
    def state(self) -> str:
        """``solution`` (the instructor's region), ``todo`` (the released stub) or
        ``answered`` (the stub replaced by the student's code)."""
        return "todo" if self.released else ("answered" if self.answered else "solution")

    def stub_line(self) -> str:
        """The line that replaces the region in the student copy."""
        message = json.dumps(f"Exercise {self.id}: {self.task}", ensure_ascii=False)
        return f"{self.indent}raise NotImplementedError({message})\n"


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _is_marker(line: str, marker: str) -> bool:
    return line.strip().startswith(marker)


def _header_above(lines: list[str], i: int,
                  path: str) -> tuple[int, str, float, str, tuple[str, ...]]:
    """The ``# Exercise`` comment block that ends right above line index ``i``.

    Returns (header index, id, points, task, needs). The task is the header's text plus any
    comment lines between the header and line ``i`` except a ``# Needs:`` line, whose ids are
    ``needs``.
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
    needs: tuple[str, ...] = ()
    more = []
    for k in range(j + 1, i):
        dep = NEEDS_RE.match(lines[k])
        if dep is None:
            more.append(lines[k].strip().lstrip("#").strip())
            continue
        needs = tuple(x.strip() for x in dep["ids"].split(",") if x.strip())
        bad = [x for x in needs if not ID_RE.match(x)]
        if bad or not needs or m["id"] in needs:
            raise ExerciseMarkerError(
                f"{path}:{k + 1}: exercise {m['id']}: expected '# Needs: <ids>' with other "
                f"exercise ids separated by commas (like '# Needs: 0.5, 20.1'), got "
                f"{lines[k].strip()!r}")
    task = " ".join([m["task"], *[t for t in more if t]]).strip()
    return j, m["id"], float(m["points"]), task, needs


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
                h, ex_id, points, task, needs = _header_above(lines, i, path)
            except ExerciseMarkerError:
                h = None
            if h is not None and ex_id == stub["id"]:
                regions.append(Region(ex_id, points, task, path, h + 1, i + 1, i + 1,
                                      stub["indent"], released=True, needs=needs))
            i += 1
            continue
        if not _is_marker(line, BEGIN):
            i += 1
            continue
        h, ex_id, points, task, needs = _header_above(lines, i, path)
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
        regions.append(Region(ex_id, points, task, path, h + 1, i + 1, k + 1, indent,
                              needs=needs))
        i = k + 1
    return regions


def _comment_lines(text: str) -> set[int]:
    """1-based numbers of the lines that start with a real comment (not inside a string)."""
    import io
    import tokenize

    try:
        return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT}
    except (tokenize.TokenError, SyntaxError):
        return set()


def parse_answered(text: str, path: str = "<string>") -> list[Region]:
    """Headers with neither a solution region nor a stub below them: in a student copy, the
    exercises whose stub has been replaced by code (``state == "answered"``)."""
    lines = text.splitlines(keepends=True)
    marked = {r.header_line for r in parse_source(text, path)}
    comments = _comment_lines(text)
    out = []
    for j, line in enumerate(lines):
        m = HEADER_RE.match(line)
        if m is None or j + 1 in marked or j + 1 not in comments:
            continue  # not a header, a marked one, or text in a string (an example)
        k = j + 1
        while k < len(lines) and lines[k].strip().startswith("#") and not HEADER_RE.match(
                lines[k]):
            k += 1
        if k == len(lines) or HEADER_RE.match(lines[k]) or not lines[k].strip():
            continue  # a header with no code below it: not an exercise
        try:
            _, ex_id, points, task, needs = _header_above(lines, k, path)
        except ExerciseMarkerError:
            continue
        out.append(Region(ex_id, points, task, path, j + 1, k + 1, k + 1, _indent_of(lines[k]),
                          needs=needs, answered=True))
    return out


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


@dataclass(frozen=True)
class Withheld:
    """A block that gives the answers of exercises ``ids`` away (lines ``begin``..``end``,
    1-based, markers included) and what ``release --homework`` puts in its place."""

    ids: tuple[str, ...]
    path: str
    begin: int
    end: int
    replacement: tuple[str, ...]  # whole lines, newline included

    @property
    def location(self) -> str:
        return f"{self.path}:{self.begin}"


def parse_withheld(text: str, path: str = "<string>") -> list[Withheld]:
    """The withheld blocks of one file, in file order."""
    lines = text.splitlines(keepends=True)
    blocks: list[Withheld] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_marker(line, WITHHELD_END):
            raise ExerciseMarkerError(f"{path}:{i + 1}: '{WITHHELD_END}' without a "
                                      f"'{WITHHELD_BEGIN}' before it")
        if not _is_marker(line, WITHHELD_BEGIN):
            i += 1
            continue
        ids = tuple(x.strip() for x in line.strip()[len(WITHHELD_BEGIN):].split(",")
                    if x.strip())
        if not ids or not all(ID_RE.match(x) for x in ids):
            raise ExerciseMarkerError(f"{path}:{i + 1}: expected '{WITHHELD_BEGIN} <ids>' with "
                                      f"the exercise ids it gives away, like '{WITHHELD_BEGIN} "
                                      f"10.2', got {line.strip()!r}")
        indent, k, replacement = _indent_of(line), i + 1, []
        while k < len(lines) and not _is_marker(lines[k], WITHHELD_END):
            body = lines[k]
            if _is_marker(body, WITHHELD_BEGIN) or _is_marker(body, BEGIN):
                raise ExerciseMarkerError(f"{path}:{k + 1}: a marker inside the withheld block "
                                          f"opened at line {i + 1}; blocks cannot nest or "
                                          f"hold a solution region")
            if body.strip().startswith(REPLACEMENT):
                text_ = body.strip()[len(REPLACEMENT):]
                replacement.append(indent + text_.removeprefix(" ").rstrip() + "\n")
            k += 1
        if k == len(lines):
            raise ExerciseMarkerError(f"{path}:{i + 1}: unterminated withheld block: no "
                                      f"'{WITHHELD_END}' after it")
        blocks.append(Withheld(ids, path, i + 1, k + 1, tuple(replacement)))
        i = k + 1
    return blocks


def withhold(text: str, path: str = "<string>") -> tuple[str, list[Withheld]]:
    """``text`` with every withheld block replaced by its replacement lines (homework mode)."""
    blocks = parse_withheld(text, path)
    if not blocks:
        return text, []
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    prev = 0
    for b in blocks:
        out.extend(lines[prev: b.begin - 1])
        out.extend(b.replacement)
        prev = b.end
    out.extend(lines[prev:])
    return "".join(out), blocks


def strip_withheld_markers(text: str, path: str = "<string>") -> str:
    """``text`` with the withheld markers and replacement lines removed, the block kept (a
    plain release: the student reads the code, not the grading scaffolding)."""
    blocks = parse_withheld(text, path)
    if not blocks:
        return text
    drop = set()
    lines = text.splitlines(keepends=True)
    for b in blocks:
        drop.update({b.begin - 1, b.end - 1})
        drop.update(k for k in range(b.begin, b.end - 1)
                    if lines[k].strip().startswith(REPLACEMENT))
    return "".join(ln for k, ln in enumerate(lines) if k not in drop)


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
    for rel, text in _python_texts(root, files):
        if "Exercise" in text or "SOLUTION" in text:
            regions.extend(parse_source(text, rel))
    check_consistent(regions)
    return regions


def scan_states(root: Path, files: list[str]) -> list[Region]:
    """Like :func:`scan_files`, plus the answered exercises of a student copy."""
    regions: list[Region] = []
    for rel, text in _python_texts(root, files):
        if "Exercise" in text:
            regions.extend(parse_source(text, rel) + parse_answered(text, rel))
    return regions


def scan_withheld(root: Path, files: list[str]) -> list[Withheld]:
    """Withheld blocks in the ``.py`` files among ``files``."""
    return [b for rel, text in _python_texts(root, files) if "WITHHELD" in text
            for b in parse_withheld(text, rel)]


def _python_texts(root: Path, files: list[str]):
    for rel in files:
        if not rel.endswith(".py"):
            continue
        try:
            yield rel, (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue


def sort_key(ex_id: str) -> tuple:
    """Order ids numerically: 0.2 < 0.10 < 1.1 < 10.2."""
    return tuple(int(p) for p in ex_id.split("."))
