"""Write the student copy of the repository: solutions stubbed, hidden tests removed.

The copy holds what ``git ls-files --cached --others --exclude-standard`` lists (a directory
walk without environments, caches and build outputs outside a git checkout), minus
``tests/hidden/``. In every ``.py`` file each solution region becomes
a ``NotImplementedError("Exercise <id>: <task>")`` raise at the region's indentation. The release
then checks that every stubbed file compiles and (optionally) that ``import minimem`` works in
the copy, so module import never runs a stub.
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

from .markers import BEGIN, ExerciseMarkerError, Region, check_consistent, strip_solutions
from .repo import is_hidden_test, repo_files


@dataclass
class ReleaseSummary:
    out: Path
    files: int = 0
    regions: list[Region] = field(default_factory=list)
    hidden_removed: list[str] = field(default_factory=list)


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


def release(out, root: Path | None = None, verify_import: bool = True) -> ReleaseSummary:
    """Write the student copy of the repository at ``root`` (default: this one) to ``out``."""
    from .repo import package_root

    root = Path(root or package_root()).resolve()
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"exercises release: OUT {str(out)!r} already exists; "
                              f"give a new folder (the release never overwrites)")
    files = repo_files(root, skip=out.resolve())
    if not files:
        raise FileNotFoundError(f"exercises release: no files found in {root}")
    out_abs = out.resolve()
    summary = ReleaseSummary(out=out)
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
            new_text, regions = strip_solutions(text, rel)
            summary.regions.extend(regions)
            if regions:
                try:
                    compile(new_text, rel, "exec")
                except SyntaxError as e:
                    raise ExerciseMarkerError(
                        f"{rel}:{e.lineno}: the file does not compile once its solutions are "
                        f"stubbed ({e.msg}); a region must be a block of statements") from e
            else:
                new_text = None
        plan.append((rel, new_text))
    check_consistent(summary.regions)

    out.mkdir(parents=True)
    for rel, new_text in plan:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if new_text is None:
            shutil.copy2(root / rel, dst)
        else:
            dst.write_text(new_text, encoding="utf-8")
            shutil.copymode(root / rel, dst)
        summary.files += 1
    if verify_import and (out / "minimem" / "__init__.py").is_file():
        why = check_import(out)
        if why is not None:
            raise RuntimeError(f"exercises release: the student copy at {out} does not import "
                               f"(module import must not run a stubbed region):\n{why}")
    return summary
