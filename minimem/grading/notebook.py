"""The first and last cells of a chapter's notebook: which exercises the page runs.

A notebook calls into the library, so in a student's copy it fails at the first stub it
reaches, deep inside a backward pass. Instead its first code cell calls :func:`start`, which
names the exercises the page runs (and those they need, from their ``# Needs:`` lines) and, while
any of them is still a stub, stops the notebook there with a short message saying which and
what to do; its last cell calls :func:`finish`, which prints the command that checks them::

    import minimem.grading.notebook as exercises
    exercises.start("00")    # first code cell
    ...
    exercises.finish("00")   # last cell

Which exercises a page runs was measured, not guessed (:data:`RUNS`): each solution region of a
copy of the repository appended its id to a file as it ran, and each notebook was executed
once. A chapter without a measured row (a new one) gets the exercises of its own chapter and of
every chapter it builds on (``Chapter.requires`` in :mod:`minimem.chapters`).
"""
from __future__ import annotations

from .markers import sort_key

# Exercises whose solution code each notebook executes (measured: see the module docstring).
# 40.4 sits inside a Numba kernel (not traceable that way); notebook 40 runs it through
# memory.sparse_attention. In a homework copy a page also runs the withheld exercises of its
# own chapter (their fast twins call the reference, i.e. the stub): see `exercises_of`.
RUNS = {
    "00": ("0.1", "0.2", "0.3", "0.4", "0.5"),
    "01": ("0.2", "0.5", "1.2"),
    "10": ("10.1", "10.2", "10.3", "10.4", "10.5"),
    "20": ("0.1", "0.2", "0.3", "0.5", "1.2", "20.3", "20.5"),
    "25": ("25.1", "25.3"),
    "30": ("0.1", "0.2", "0.4", "0.5", "1.2", "30.1", "30.2"),
    "40": ("0.1", "0.2", "0.3", "0.5", "1.2", "40.1", "40.2", "40.3", "40.4"),
    "45": ("0.1", "0.2", "0.3", "0.4", "0.5", "1.2", "40.3", "45.1", "45.2"),
    "50": ("0.1", "0.2", "0.5", "1.2", "50.1", "50.2", "50.3"),
    "55": ("0.1", "0.2", "0.3", "0.4", "0.5", "50.1", "50.2", "50.3", "55.1", "55.2", "55.3",
           "55.4"),
}
RELEASE_INFO = ".minimem-release.json"  # written by the release at the copy's root


class ExercisesNotDone(RuntimeError):
    """Raised by :func:`start` while an exercise the page runs is still a stub. IPython shows
    the message alone (``_render_traceback_``), not a traceback into the library."""

    def _render_traceback_(self):
        return str(self).splitlines()


def _chapter_id(chapter: str) -> str:
    from ..chapters import CHAPTERS

    for ch in CHAPTERS:
        if chapter in (ch.id, ch.key, ch.notebook):
            return ch.id
    raise ValueError(f"notebook.start: no chapter {chapter!r}; expected a chapter id, key or "
                     f"notebook name, like '00', 'engine' or '00_autograd'")


def _builds_on(ch_id: str) -> set[str]:
    from ..chapters import CHAPTERS

    from . import reachable

    return {str(int(c)) for c in reachable([ch_id], {ch.id: ch.requires for ch in CHAPTERS})}


def exercises_of(chapter: str, root=None) -> list:
    """The exercise regions (with their state) that the chapter's notebook runs, with every
    exercise they need, in id order."""
    from . import list_exercises, needs_closure

    ch_id = _chapter_id(chapter)
    regions = {}
    for r in list_exercises(root, states=True):
        regions.setdefault(r.id, r)
    if ch_id in RUNS:
        ran = [x for x in RUNS[ch_id] if x in regions]
    else:
        prefixes = _builds_on(ch_id)
        ran = [x for x in regions if x.split(".")[0] in prefixes]
    ran += [x for x in _withheld_in(root) if x in regions and x.split(".")[0] == str(int(ch_id))]
    return [regions[x] for x in needs_closure(ran, regions)]


def _withheld_in(root) -> list[str]:
    """The exercises whose fast twins a homework copy withholds (none in other copies)."""
    import json
    from pathlib import Path

    from .repo import package_root

    try:
        info = json.loads((Path(root or package_root()) / RELEASE_INFO).read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [str(x) for x in info.get("withheld", [])] if isinstance(info, dict) else []


def _command(regions) -> str:
    from .grade import CHECK_COMMAND

    return CHECK_COMMAND.format(ids=",".join(r.id for r in regions))


def start(chapter: str, root=None) -> None:
    """The first cell: print the exercises this page runs; stop (:class:`ExercisesNotDone`)
    while any is still a stub."""
    regions = exercises_of(chapter, root)
    if not regions:
        print("This page runs no graded exercise.")
        return
    todo = [r for r in regions if r.state == "todo"]
    lines = [(f"This page runs the code of exercise{'s' if len(regions) > 1 else ''} "
              f"{', '.join(r.id for r in regions)}.")]
    if not todo:
        print(_wrap(lines[0] + (" They are" if len(regions) > 1 else " It is")
                    + (" answered in this copy; check them with the last cell's command."
                       if any(r.state == "answered" for r in regions)
                       else " solved in this copy.")))
        return
    lines.append(f"Not done yet ({len(todo)}), so the page stops here:")
    width = max(len(r.id) for r in todo)
    for r in sorted(todo, key=lambda r: sort_key(r.id)):
        needs = f" [needs {', '.join(r.needs)}]" if r.needs else ""
        lines.append(_wrap(f"  {r.id:<{width}}  {r.location}  {r.task}{needs}",
                           indent=" " * (width + 4)))
    lines += ["What to do: fill in those stubs (an exercise's needs first), check them from the",
              "repository's folder with",
              f"  {_command(todo)}",
              "then run this notebook again. Until then, read the page as it is."]
    lines[0] = _wrap(lines[0])
    raise ExercisesNotDone("\n".join(lines))


def _wrap(text: str, indent: str = "") -> str:
    """``text`` in lines of at most 88 columns (a page's output never scrolls sideways)."""
    import textwrap

    return textwrap.fill(text, width=88, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def finish(chapter: str, root=None) -> None:
    """The last cell: the command that checks this page's exercises (their visible tests):
    those the page runs and every exercise of its chapter."""
    from . import list_exercises

    own = str(int(_chapter_id(chapter)))
    regions = {r.id: r for r in exercises_of(chapter, root)}
    for r in list_exercises(root, states=True):
        if r.id.split(".")[0] == own:
            regions.setdefault(r.id, r)
    regions = [regions[x] for x in sorted(regions, key=sort_key)]
    if not regions:
        print("This page runs no graded exercise.")
        return
    print(f"Check this page's exercises (their visible tests only), from the repository's "
          f"folder:\n  {_command(regions)}")
