"""The chapter table, the layout it promises, and the layering of the packages."""
import ast
import importlib
import re
from pathlib import Path

import pytest

import minimem
from minimem import memory
from minimem.bench import benchmarks
from minimem.chapters import CHAPTERS, app_module, chapter
from minimem.tour import steps

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "minimem"
MEMORY_CHAPTERS = [ch for ch in CHAPTERS if ch.package.startswith("minimem.memory.")]
ROLE_FILES = ("__init__.py", "cases.py", "lab.py", "plots.py")


def test_table_is_ordered_with_unique_ids_keys_and_notebooks():
    ids = [ch.id for ch in CHAPTERS]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len({ch.key for ch in CHAPTERS}) == len(CHAPTERS)
    for ch in CHAPTERS:
        assert ch.notebook.startswith(ch.id + "_")
        assert (ROOT / "notebooks" / f"{ch.notebook}.ipynb").is_file(), ch.notebook
    assert chapter("delta") is chapter("20")
    with pytest.raises(ValueError, match="chapter: no chapter 'nope'"):
        chapter("nope")


def test_book_toc_lists_the_chapters_in_table_order():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    files = re.findall(r"- file: notebooks/(\S+)", toc)
    assert files == [ch.notebook for ch in CHAPTERS]


def test_every_notebook_is_in_the_table():
    on_disk = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert on_disk == sorted(ch.notebook for ch in CHAPTERS)


@pytest.mark.parametrize("ch", MEMORY_CHAPTERS, ids=[ch.key for ch in MEMORY_CHAPTERS])
def test_memory_chapter_folder_has_the_file_roles(ch):
    folder = PACKAGE.joinpath(*ch.package.split(".")[1:])
    for name in ROLE_FILES:
        assert (folder / name).is_file(), f"{folder.name}/{name}"
    # a chapter that adds layers to a transformer keeps them in layers.py (segment's models
    # are the mechanisms themselves)
    if ch.key != "mrbp":
        assert (folder / "layers.py").is_file(), f"{folder.name}/layers.py"
    package = importlib.import_module(ch.package)
    # the chapter exports exactly what minimem.memory re-exports of it
    assert package.__all__ and set(package.__all__) <= set(memory.__all__)
    for name in package.__all__:
        assert getattr(memory, name) is getattr(package, name)


def test_no_module_is_left_loose_in_memory():
    loose = [p.name for p in (PACKAGE / "memory").glob("*.py") if p.name != "__init__.py"]
    assert loose == []


def test_memory_exports_no_lab_or_plot_helper():
    for ch in MEMORY_CHAPTERS:
        for sub in ("lab", "plots"):
            module = importlib.import_module(f"{ch.package}.{sub}")
            own = {n for n, v in vars(module).items()
                   if callable(v) and getattr(v, "__module__", None) == module.__name__}
            assert not own & set(memory.__all__), (ch.key, sub, own & set(memory.__all__))


def test_every_chapter_has_a_tour_step_and_the_apps_follow_the_table():
    assert [key for key, _ in steps()] == [ch.key for ch in CHAPTERS]
    keys = list(benchmarks())
    assert keys == [ch.key for ch in CHAPTERS if app_module("bench", ch) is not None]
    assert set(keys) >= {"engine", "hopfield", "delta", "pkm", "sparse", "mrbp"}


def _imported_modules(path):
    """Absolute names of the minimem modules a file imports (relative imports resolved)."""
    # a module's package, and an __init__'s own package, are both its path without the file
    package = list(path.relative_to(ROOT).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.append(name)
            found += [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [n for n in found if n.split(".")[0] == "minimem"]


ABOVE_THE_ENGINE = ("minimem.memory", "minimem.nn", "minimem.chapters", "minimem.cli",
                   "minimem.bench", "minimem.tour", "minimem.grading", "minimem.train",
                   "minimem.optim", "minimem.tasks", "minimem.viz")


@pytest.mark.parametrize("layer", ["autograd", "kernels"])
def test_engine_and_kernels_import_nothing_above_them(layer):
    bad = {}
    for path in (PACKAGE / layer).rglob("*.py"):
        hits = [m for m in _imported_modules(path) if m.startswith(ABOVE_THE_ENGINE)]
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    assert bad == {}


def test_the_import_checker_sees_relative_imports():
    hits = _imported_modules(PACKAGE / "memory" / "delta" / "cases.py")
    assert "minimem.nn.cases" in hits and "minimem.autograd.registry" in hits


def test_kernel_files_are_not_named_after_a_chapter():
    chapter_words = {"hopfield", "delta_rule", "product_keys", "sparse_attention", "knn",
                     "mrbp", "memformer"}
    names = {p.stem for p in (PACKAGE / "kernels").glob("*.py")}
    assert not names & chapter_words
    assert minimem.kernels.__doc__ and "re-exports nothing" in minimem.kernels.__doc__
