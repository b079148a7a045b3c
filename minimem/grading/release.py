"""Write the student copy of the repository: solutions stubbed, hidden tests removed.

The copy holds what ``git ls-files --cached --others --exclude-standard`` lists (a directory
walk without environments, caches and build outputs outside a git checkout), minus
``tests/hidden/``. In every ``.py`` file each solution region becomes
a ``NotImplementedError("Exercise <id>: <task>")`` raise at the region's indentation. The release
then checks that every stubbed file compiles and (optionally) that ``import minimem`` works in
the copy, so module import never runs a stub.

The copy's ``README.md`` is not the instructor's (hidden tests, Gradescope, grading others):
the release writes ``STUDENT.md`` (:func:`student_guide`: the first command, the order of the
exercises with their dependencies, how to check one) and a ``README.md`` that points to it.

``homework=True`` also replaces each withheld block (code elsewhere that gives an answer away:
a fast twin, a formula) by its replacement lines (:func:`~minimem.grading.markers.withhold`);
a plain release keeps the code and drops only the markers. ``outputs_from`` (a folder of
executed notebooks, e.g. the book's ``book/_build/jupyter_execute/notebooks``) copies their
outputs into the copy's notebooks of the same name whose cells have the same sources: the
student reads every page, numbers and figures included, before any exercise is done, while
the code the pages show is the copy's own (stubs, not solutions). The built HTML book is not
handed out instead because its pages include the reference code of the exercises.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .markers import (
    BEGIN,
    ExerciseMarkerError,
    Region,
    Withheld,
    check_consistent,
    sort_key,
    strip_solutions,
    strip_withheld_markers,
    withhold,
)
from .repo import is_hidden_test, repo_files

STUDENT_GUIDE = "STUDENT.md"
RELEASE_INFO = ".minimem-release.json"  # what kind of copy this is (read by grading.notebook)


@dataclass
class ReleaseSummary:
    out: Path
    files: int = 0
    regions: list[Region] = field(default_factory=list)
    hidden_removed: list[str] = field(default_factory=list)
    homework: bool = False
    withheld: list[Withheld] = field(default_factory=list)
    notebooks_with_outputs: int = 0


def _notebook_has_solution(path: Path) -> bool:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if any(line.strip().startswith(BEGIN) for line in src.splitlines()):
            return True
    return False


def check_import(out: Path, timeout: float = 120.0) -> str | None:
    """None if ``import minimem`` works in the copy at ``out`` (and resolves there), else why."""
    code = "import minimem, sys; sys.stdout.write(minimem.__file__)"
    path = os.pathsep.join(p for p in (str(out), os.environ.get("PYTHONPATH", "")) if p)
    try:
        with tempfile.TemporaryDirectory(prefix="minimem-import-") as tmp:
            # leave no bytecode or Numba cache behind in the copy
            env = dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1",
                       NUMBA_CACHE_DIR=tmp)
            res = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env,
                                 capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"`import minimem` did not finish within {timeout:g} s"
    if res.returncode != 0:
        return res.stderr.strip()[-3000:] or f"exit status {res.returncode}"
    if not Path(res.stdout.strip()).resolve().is_relative_to(out.resolve()):
        return f"`import minimem` resolved to {res.stdout.strip()}, not to the copy"
    return None


def _release_text(rel: str, text: str, summary: ReleaseSummary, solutions: bool) -> str:
    """The student's version of one ``.py`` file."""
    if summary.homework:
        text, blocks = withhold(text, rel)
        summary.withheld.extend(blocks)
    else:
        text = strip_withheld_markers(text, rel)
    if solutions:
        text, regions = strip_solutions(text, rel)
        summary.regions.extend(regions)
    return text


def release(out, root: Path | None = None, verify_import: bool = True, homework: bool = False,
            outputs_from=None, solutions: bool = True) -> ReleaseSummary:
    """Write the student copy of the repository at ``root`` (default: this one) to ``out``.

    ``homework``: also withhold the code that gives answers away; ``outputs_from``: a folder
    of executed notebooks whose outputs the copy's notebooks get; ``solutions=False`` keeps the
    solutions (an instructor's check that withholding leaves a working package).
    """
    from .repo import package_root

    root = Path(root or package_root()).resolve()
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"exercises release: OUT {str(out)!r} already exists; "
                              f"give a new folder (the release never overwrites)")
    if outputs_from is not None and not Path(outputs_from).is_dir():
        raise FileNotFoundError(f"exercises release: --outputs-from {str(outputs_from)!r} is "
                                f"not a folder of executed notebooks")
    files = repo_files(root, skip=out.resolve())
    if not files:
        raise FileNotFoundError(f"exercises release: no files found in {root}")
    out_abs = out.resolve()
    summary = ReleaseSummary(out=out, homework=homework)
    plan: list[tuple[str, str | None]] = []  # (relative path, new text or None = copy as is)
    for rel in files:
        src = root / rel
        if out_abs == src.resolve() or out_abs in src.resolve().parents:
            continue
        if is_hidden_test(rel):
            summary.hidden_removed.append(rel)
            continue
        if rel.endswith(".ipynb") and _notebook_has_solution(src):
            raise ExerciseMarkerError(f"{rel}: a notebook holds a solution region; solutions "
                                      f"belong in library code")
        new_text = None
        if rel.endswith(".py"):
            text = src.read_text(encoding="utf-8")
            new_text = _release_text(rel, text, summary, solutions)
            if new_text != text:
                try:
                    compile(new_text, rel, "exec")
                except SyntaxError as e:
                    raise ExerciseMarkerError(
                        f"{rel}:{e.lineno}: the file does not compile once its solutions are "
                        f"stubbed or its withheld blocks replaced ({e.msg}); a region must be "
                        f"a block of statements") from e
            else:
                new_text = None
        elif rel.endswith(".ipynb") and outputs_from is not None:
            new_text = _with_outputs(src, Path(outputs_from) / Path(rel).name)
            summary.notebooks_with_outputs += new_text is not None
        plan.append((rel, new_text))
    check_consistent(summary.regions)
    guide = student_guide(summary.regions, homework=homework)
    plan = [(rel, text) for rel, text in plan
            if rel not in ("README.md", STUDENT_GUIDE, RELEASE_INFO)]
    withheld_ids = sorted({x for b in summary.withheld for x in b.ids}, key=sort_key)
    info = json.dumps({"homework": homework, "withheld": withheld_ids}) + "\n"
    plan += [(STUDENT_GUIDE, guide), ("README.md", STUDENT_README), (RELEASE_INFO, info)]

    out.mkdir(parents=True)
    for rel, new_text in plan:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if new_text is None:
            shutil.copy2(root / rel, dst)
        else:
            dst.write_text(new_text, encoding="utf-8")
            if (root / rel).is_file():
                shutil.copymode(root / rel, dst)
        summary.files += 1
    if verify_import and (out / "minimem" / "__init__.py").is_file():
        why = check_import(out)
        if why is not None:
            raise RuntimeError(f"exercises release: the student copy at {out} does not import "
                               f"(module import must not run a stubbed region):\n{why}")
    return summary


def _with_outputs(src: Path, executed: Path) -> str | None:
    """The notebook at ``src`` with the outputs of ``executed`` (same cell sources), else
    None (the notebook is copied as it is)."""
    try:
        nb = json.loads(src.read_text(encoding="utf-8"))
        done = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cells, ran = nb.get("cells", []), done.get("cells", [])

    def source(c):
        s = c.get("source", "")
        return "".join(s) if isinstance(s, list) else s

    if len(cells) != len(ran) or any(source(a) != source(b) or a.get("cell_type") !=
                                     b.get("cell_type") for a, b in zip(cells, ran)):
        return None
    for a, b in zip(cells, ran):
        if a.get("cell_type") == "code":
            a["outputs"] = b.get("outputs", [])
            a["execution_count"] = b.get("execution_count")
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


STUDENT_README = """# minimem: your student copy

Start with [STUDENT.md](STUDENT.md): what to do first, the exercises in order, how to check one.
"""


def student_guide(regions: list[Region], homework: bool = False) -> str:
    """The text of ``STUDENT.md`` for a copy whose stubs are ``regions``."""
    by_id: dict[str, Region] = {}
    for r in regions:
        by_id.setdefault(r.id, r)
    rows = []
    for ex_id in sorted(by_id, key=sort_key):
        r = by_id[ex_id]
        task = r.task.replace("|", "\\|")
        rows.append(f"| {ex_id} | {r.points:g} | {', '.join(r.needs) or '-'} | "
                    f"`{r.location}` | {task} |")
    total = sum(r.points for r in by_id.values())
    table = "\n".join(rows) or "| - | - | - | - | no exercises |"
    homework_note = ("\nThis is a homework copy: code elsewhere that would give an answer away "
                     "(a fast twin of a mechanism, a formula) was replaced by the reference "
                     "path, so the package still runs.\n" if homework else "")
    return f"""# minimem: the student's copy

You have {len(by_id)} exercises worth {total:g} points. Each is a
`raise NotImplementedError("Exercise <id>: ...")` in the library code, under a comment
`# Exercise <id> (<points> pt): <task>`; a `# Needs: <ids>` line below it names the
exercises whose code it calls (do those first).
{homework_note}
## 1. The first command (installs, runs nothing else)

```bash
make student        # creates .venv, installs minimem with its test tools, lists the exercises
```

It needs Python >= 3.10 and `make`. It does not run the test suite: most tests fail until
the exercises are done, and that says nothing about your work.

## 2. Read, then do the exercises in this order

Each notebook in `notebooks/` starts with a cell that names the exercises it runs (with those
they need) and, while one of them is still a stub, stops there and says which, instead of
failing deep inside the library. Read a page before its exercises: if your instructor
released the copy with the executed notebooks (`--outputs-from`), every notebook already shows
its outputs and figures; open it with `make lab` (or any Jupyter).

| id | pt | needs | where | task |
|---|---|---|---|---|
{table}

Chapter 0's exercises (the engine's backward passes) come first: every later notebook trains
something, so it runs them.

## 3. Check one exercise

```bash
.venv/bin/minimem exercises check 0.5          # just the visible tests of exercise 0.5
.venv/bin/minimem exercises list               # every exercise: TO DO or done?, needs, where
.venv/bin/minimem grade                        # the table of all exercises (visible tests)
```

`exercises check` selects tests by their exercise marker, so it never runs another
exercise's tests, and says first when an exercise it needs is still a stub. The last cell of
each notebook prints the check command for that notebook's exercises. The grade table shows,
per exercise short of full marks, the first lines of the first failure (actual against
expected) and that command. Your instructor grades with more tests than you see.
"""
