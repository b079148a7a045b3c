"""The instructor's repository: where it is and which of its files belong to it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Directory names never copied by the directory-walk fallback (build outputs, caches, envs).
EXCLUDED_DIRS = {
    ".git", ".hg", ".venv", "venv", "env", "__pycache__", ".pytest_cache", ".hypothesis",
    ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache", ".tox", ".nox", "build", "dist",
    "_build", "tour_out", "bench_out", ".eggs", "node_modules",
}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".so", ".nbi", ".nbc", ".egg-info")
HIDDEN_TESTS = "tests/hidden/"


def package_root() -> Path:
    """The folder holding the ``minimem`` package this module belongs to."""
    return Path(__file__).resolve().parents[2]


def instructor_root() -> Path:
    """The repository root of the running minimem (it must hold ``tests/``)."""
    root = package_root()
    if not (root / "pyproject.toml").is_file() or not (root / "tests").is_dir():
        raise FileNotFoundError(
            f"grade: no instructor repository found at {root} (expected pyproject.toml and tests/ "
            f"next to the minimem package); install minimem from a checkout with `pip install -e .`"
        )
    return root


def _git_files(root: Path) -> list[str] | None:
    try:
        res = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard",
             "-z"],
            capture_output=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, check=False)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
        return None  # root is a subfolder of some other repository: walk it instead
    names = [n for n in res.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return sorted({n for n in names if (root / n).is_file() and not (root / n).is_symlink()})


def _walk_files(root: Path, skip: Path | None = None) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in EXCLUDED_DIRS and not d.endswith(EXCLUDED_SUFFIXES)
            and (skip is None or (here / d).resolve() != skip)
        )
        for f in sorted(filenames):
            p = here / f
            if f.endswith(EXCLUDED_SUFFIXES) or p.is_symlink() or not p.is_file():
                continue
            out.append(p.relative_to(root).as_posix())
    return out


def repo_files(root: Path, skip: Path | None = None) -> list[str]:
    """Files of the repository at ``root``, relative POSIX paths, sorted.

    What ``git ls-files --cached --others --exclude-standard`` lists (tracked plus untracked
    files that .gitignore does not exclude); outside a git checkout, a directory walk that
    skips virtual environments, caches and build outputs (and ``skip``).
    """
    files = _git_files(root)
    return files if files is not None else _walk_files(root, skip)


def is_hidden_test(rel: str) -> bool:
    return rel.startswith(HIDDEN_TESTS)
