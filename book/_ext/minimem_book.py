"""Sphinx directives that write the book's tables from the code, so they cannot drift from it.

* ``{minimem-chapter-map}``: every row of :data:`minimem.chapters.CHAPTERS` — the chapter page,
  what it builds on, its learning goals (the "You will learn" list of the notebook's first cell),
  its exercises and its code folder.
* ``{minimem-exercises}``: every exercise header found in the code (``minimem exercises list``):
  id, points, chapter, the task, the file.
* ``{minimem-api} KEY``: the API reference of one chapter — an ``automodule`` of every module of
  the chapter's package (and of the modules named by ``:also:``), docstrings with their math, and
  a ``[source]`` link per object (``sphinx.ext.viewcode``).
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

ROOT = Path(__file__).resolve().parents[2]
# the modules a chapter's API page leaves out: registry glue, not API
SKIP_MODULES = {"cases"}


def learning_goals(notebook: str) -> list[str]:
    """The bullets under "You will learn" in the notebook's first markdown cell."""
    nb = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    first = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    text = "".join(first["source"])
    start = re.search(r"You will learn[^\n]*\n", text)
    if not start:
        return []
    goals = []
    for line in text[start.end():].splitlines():
        if not line.strip():
            if goals:
                break
            continue
        item = re.match(r"\s*[-*]\s+(.*)", line)
        if item:
            goals.append(item.group(1).strip())
        elif goals and line.startswith(" "):
            goals[-1] += " " + line.strip()
        else:
            break
    return goals


def _exercises_by_chapter():
    from minimem.grading import list_exercises

    by_chapter: dict[str, dict[str, float]] = {}
    for region in list_exercises(ROOT):
        chapter_id = region.id.split(".")[0].zfill(2)
        by_chapter.setdefault(chapter_id, {})[region.id] = region.points
    return by_chapter


def _plain(text: str) -> str:
    """``text`` as literal reST: exercise tasks hold |x|, a * b and backticks."""
    return re.sub(r"([\\|*`_])", r"\\\1", text)


def _list_table(header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :class: minimem-table",
             f"   :widths: {' '.join(map(str, widths))}", ""]
    for row in [header] + rows:
        for i, cell in enumerate(row):
            cell_lines = (cell or " ").splitlines() or [" "]
            lines.append(("   * - " if i == 0 else "     - ") + cell_lines[0])
            lines += ["       " + extra for extra in cell_lines[1:]]
    return lines


class _RstDirective(Directive):
    """A directive that writes reST and parses it in place.

    The book's pages are MyST, whose nested parser reads Markdown: the reST goes through
    MyST's ``eval-rst`` block, which hands it to the reST parser.
    """

    def rst(self) -> list[str]:
        raise NotImplementedError

    def run(self):
        from docutils import nodes

        # the page is re-read when the table, a notebook or this file changes
        env = self.state.document.settings.env
        for path in [ROOT / "minimem" / "chapters.py", Path(__file__),
                     *sorted((ROOT / "notebooks").glob("*.ipynb"))]:
            env.note_dependency(str(path))
        container = nodes.container()
        lines = ["```{eval-rst}", *self.rst(), "```"]
        self.state.nested_parse(StringList(lines, source="minimem_book"), self.content_offset,
                                container)
        return container.children


def _myst_inline_to_rst(text: str) -> str:
    """The inline markup of a notebook's Markdown (``$x$``, single backticks) in reST."""
    # one pass over both, so that the backticks a math role writes are never read again
    return re.sub(r"\$([^$]+)\$|`([^`]+)`",
                  lambda m: f":math:`{m[1]}`" if m[1] is not None else f"``{m[2]}``", text)


class ChapterMap(_RstDirective):
    """The chapter table (page, code, what it builds on, exercises), then each chapter's
    learning goals."""

    def rst(self):
        from minimem.chapters import CHAPTERS

        exercises = _exercises_by_chapter()
        rows = []
        for ch in CHAPTERS:
            ex = exercises.get(ch.id, {})
            folder = ch.package.replace(".", "/")
            rows.append([
                f":doc:`{ch.id} · {ch.title} </notebooks/{ch.notebook}>`",
                f"``{folder}/``",
                ", ".join(ch.requires) or "—",
                (", ".join(ex) + f" ({sum(ex.values()):g} pt)") if ex else "—",
            ])
        lines = _list_table(["chapter", "code", "builds on", "exercises"], rows, [40, 26, 10, 24])
        lines += ["", ".. rubric:: What each chapter teaches", ""]
        for ch in CHAPTERS:
            lines += [f":doc:`{ch.id} · {ch.title} </notebooks/{ch.notebook}>`", ""]
            lines += [f"- {_myst_inline_to_rst(goal)}" for goal in learning_goals(ch.notebook)]
            lines += [""]
        return lines


class ExerciseTable(_RstDirective):
    def rst(self):
        from minimem.chapters import CHAPTERS
        from minimem.grading import list_exercises
        from minimem.grading.markers import sort_key

        pages = {ch.id: ch for ch in CHAPTERS}
        seen, rows = set(), []
        for r in sorted(list_exercises(ROOT), key=lambda r: sort_key(r.id)):
            if r.id in seen:
                continue
            seen.add(r.id)
            ch = pages.get(r.id.split(".")[0].zfill(2))
            where = f":doc:`{ch.id} </notebooks/{ch.notebook}>`" if ch else "—"
            rows.append([f"**{r.id}**", f"{r.points:g}", where, _plain(r.task), f"``{r.path}``"])
        total = sum({r[0]: float(r[1]) for r in rows}.values())
        return _list_table(["id", "pt", "chapter", "what it asks", "file"], rows,
                           [6, 4, 8, 56, 26]) + ["", f"{len(rows)} exercises, {total:g} points."]


class ChapterApi(_RstDirective):
    required_arguments = 1
    option_spec = {"also": directives.unchanged}

    def modules(self) -> list[tuple[str, bool]]:
        """(module name, is a package) for the chapter's package, its modules, then ``:also:``."""
        from minimem.chapters import chapter

        names = [chapter(self.arguments[0]).package] + self.options.get("also", "").split()
        found = []
        for name in names:
            module = importlib.import_module(name)
            found.append((name, hasattr(module, "__path__")))
            if hasattr(module, "__path__"):
                for info in pkgutil.walk_packages(module.__path__, prefix=name + "."):
                    if info.name.rsplit(".", 1)[-1] not in SKIP_MODULES:
                        found.append((info.name, info.ispkg))
        return found

    def rst(self):
        lines = []
        for name, is_package in self.modules():
            # a package's page is its docstring only: what it exports is documented where it
            # is defined (one entry per object, one [source] link)
            path = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
            lines += [f".. rubric:: {path}", "   :class: minimem-module", ""]
            lines += [f".. automodule:: {name}"]
            lines += [] if is_package else ["   :members:", "   :show-inheritance:"]
            lines += [""]
        return lines


def setup(app):
    app.add_directive("minimem-chapter-map", ChapterMap)
    app.add_directive("minimem-exercises", ExerciseTable)
    app.add_directive("minimem-api", ChapterApi)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
