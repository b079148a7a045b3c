"""The book: its pages follow the conventions of book/README.md, and it builds and renders
offline (no script, stylesheet or font from another host; MathJax bundled).

The static checks read the notebooks and the bibliography; ``test_small_book_builds_offline``
builds a small book with the book's own configuration (the landing page, one chapter page
unexecuted, one API page and the bibliography) and inspects the HTML.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minimem.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"


def _load(name, path):
    """A module of the book's tooling (book/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_book = _load("check_book", BOOK / "check_book.py")
learning_goals = _load("minimem_book", BOOK / "_ext" / "minimem_book.py").learning_goals


def _cells(notebook):
    nb = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    return nb["cells"]


def _markdown(notebook):
    return "\n\n".join("".join(c["source"]) for c in _cells(notebook)
                       if c["cell_type"] == "markdown")


def _bib_entries():
    text = (BOOK / "references.bib").read_text(encoding="utf-8")
    entries = {}
    for match in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, re.DOTALL):
        entries[match.group(1)] = match.group(2)
    return entries


NOTEBOOKS = [ch.notebook for ch in CHAPTERS]


# --- the pages follow the conventions ----------------------------------------------------

@pytest.mark.parametrize("ch", CHAPTERS, ids=[ch.key for ch in CHAPTERS])
def test_chapter_title_and_section_numbering(ch):
    text = _markdown(ch.notebook)
    titles = re.findall(r"^# (.+)$", text, re.MULTILINE)
    assert titles and titles[0].startswith(f"{ch.id} · "), titles[:1]
    assert len(titles) == 1, f"{ch.notebook}: more than one '# ' title: {titles}"
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    numbered = [s for s in sections if s[0].isdigit()]
    assert numbered, f"{ch.notebook}: no numbered sections"
    for i, section in enumerate(numbered, start=1):
        assert section.startswith(f"{i} · "), f"{ch.notebook}: section {section!r} is not '{i} · ...'"
    for section in sections:
        if not section[0].isdigit():
            assert section in ("Exercises", "Summary", "Paper vs minimem"), \
                f"unnumbered section {section!r}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_first_cell_has_learning_goals_and_prerequisites(notebook):
    goals = learning_goals(notebook)
    assert 3 <= len(goals) <= 6, f"{notebook}: {len(goals)} learning goals"
    first = "".join(next(c for c in _cells(notebook) if c["cell_type"] == "markdown")["source"])
    assert "**Builds on**" in first


def test_every_entry_of_the_bibliography_has_a_link():
    entries = _bib_entries()
    assert len(entries) >= 25
    for key, body in entries.items():
        url = re.search(r"url\s*=\s*\{(https://[^}]+)\}", body)
        assert url, f"references.bib: {key} has no https url"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_citations_resolve(notebook):
    keys = set(_bib_entries())
    cited = re.findall(r"\{cite:[pt]\}`([^`]+)`", _markdown(notebook))
    assert cited, f"{notebook} cites no paper"
    for group in cited:
        for key in group.split(","):
            assert key.strip() in keys, f"{notebook}: unknown citation {key!r}"


def _equation_labels():
    labels = {}
    for notebook in NOTEBOOKS:
        for label in re.findall(r"\$\$\s*\(([\w-]+)\)\s*$", _markdown(notebook), re.MULTILINE):
            labels.setdefault(label, []).append(notebook)
    return labels


def test_equation_labels_are_unique_and_every_reference_has_its_label():
    labels = _equation_labels()
    assert len(labels) >= 10
    assert all(len(where) == 1 for where in labels.values()), \
        {k: v for k, v in labels.items() if len(v) > 1}
    for notebook in NOTEBOOKS:
        for ref in re.findall(r"\{eq\}`([\w-]+)`", _markdown(notebook)):
            assert ref in labels, f"{notebook}: {{eq}}`{ref}` has no label"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_relative_links_point_at_files_that_exist(notebook):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _markdown(notebook))
    local = [link for link in links if not check_book.is_remote(link)
             and not link.startswith("mailto:")]
    assert local, f"{notebook} links no source file"
    for link in local:
        assert (ROOT / "notebooks" / link).resolve().is_file(), f"{notebook}: broken link {link}"


def _python_object_exists(path: Path, dotted: str) -> bool:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    scope = tree.body
    for part in dotted.split("."):
        found = next((node for node in scope
                      if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                      and node.name == part), None)
        if found is None:
            return False
        scope = found.body
    return True


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_pages_show_library_code_included_from_the_source(notebook):
    includes = re.findall(r"```\{literalinclude\}\s+(\S+)\s*\n:pyobject:\s*(\S+)",
                          _markdown(notebook))
    assert includes, f"{notebook} shows no library code"
    for rel, obj in includes:
        path = (ROOT / "notebooks" / rel).resolve()
        assert path.is_file() and ROOT / "minimem" in path.parents, rel
        assert _python_object_exists(path, obj), f"{notebook}: {rel} has no {obj}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_code_cells_fit_88_columns(notebook):
    for i, cell in enumerate(_cells(notebook)):
        if cell["cell_type"] == "code":
            for line in "".join(cell["source"]).splitlines():
                assert len(line) <= 88, f"{notebook} cell {i}: {len(line)} columns: {line}"


def test_every_chapter_has_an_api_page_in_the_toc():
    toc = (BOOK / "_toc.yml").read_text()
    for ch in CHAPTERS:
        page = BOOK / "api" / f"{ch.key}.md"
        assert page.is_file() and f"{{minimem-api}} {ch.key}" in page.read_text()
        assert f"file: book/api/{ch.key}" in toc
    assert "file: book/bibliography" in toc


# --- the checker itself ------------------------------------------------------------------

def test_checker_finds_what_a_page_loads_from_another_host(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "local.css").write_text(
        "@font-face { src: url(https://fonts.example.org/x.woff2); }\n"
        ".a { background: url(../img/ok.png); }")
    (tmp_path / "page.html").write_text(
        '<html><head><script src="https://cdn.example.org/mathjax.js"></script>'
        '<script src="_static/ok.js"></script>'
        '<link rel="stylesheet" href="//cdn.example.org/theme.css">'
        '<link rel="stylesheet" href="_static/local.css">'
        '<style>@import "https://x.example.org/y.css";</style></head>'
        '<body><a href="https://arxiv.org/abs/1706.03762">a link is not a load</a>'
        '<img src="data:image/png;base64,AAAA"></body></html>')
    (tmp_path / "clean.html").write_text('<script src="_static/ok.js"></script>')
    report = check_book.static_check(tmp_path)
    assert report["clean.html"] == []
    remote = " ".join(report["page.html"])
    for host in ("cdn.example.org/mathjax.js", "//cdn.example.org/theme.css",
                 "x.example.org/y.css", "fonts.example.org/x.woff2"):
        assert host in remote
    assert "arxiv.org" not in remote and "ok.js" not in remote and "data:" not in remote


# --- a small build with the book's configuration ------------------------------------------

@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    """The book's configuration, with execution off and a short table of contents."""
    if importlib.util.find_spec("jupyter_book") is None:
        pytest.fail("jupyter-book is not installed: it is part of the dev extra "
                    "(pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("book")
    config = (BOOK / "_config.yml").read_text()
    config = config.replace("execute_notebooks: force", "execute_notebooks: \"off\"")
    assert 'execute_notebooks: "off"' in config
    (BOOK / "_test_config.yml").write_text(config)
    (BOOK / "_test_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/20_delta_rule\n"
        "  - file: book/api/delta\n  - file: book/bibliography\n")
    try:
        run = subprocess.run(
            [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
             "build", str(ROOT), "--config",
             str(BOOK / "_test_config.yml"), "--toc", str(BOOK / "_test_toc.yml"),
             "--path-output", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    finally:
        (BOOK / "_test_config.yml").unlink(missing_ok=True)
        (BOOK / "_test_toc.yml").unlink(missing_ok=True)
    html = out / "_build" / "html"
    assert run.returncode == 0 and (html / "index.html").is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    return html


def test_small_book_loads_nothing_from_another_host(small_book):
    report = check_book.static_check(small_book)
    assert len(report) >= 4
    assert {page: remote for page, remote in report.items() if remote} == {}


def test_small_book_bundles_mathjax_and_points_the_pages_at_it(small_book):
    assert (small_book / "_static" / "mathjax" / "tex-chtml.js").is_file()
    page = (small_book / "notebooks" / "20_delta_rule.html").read_text()
    assert re.search(r'<script[^>]+src="\.\./_static/mathjax/tex-chtml\.js', page)
    assert "\\begin{aligned}" in page            # the math is there for MathJax to typeset


def test_small_book_shows_the_code_the_api_and_the_citations(small_book):
    page = (small_book / "notebooks" / "20_delta_rule.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)                  # the highlighted code as text
    assert "def delta_rule_reference(q, k, v, beta" in text
    assert "bibliography.html#" in page                                     # a resolved cite
    api = (small_book / "book" / "api" / "delta.html").read_text()
    assert "delta_rule_reference" in api and "_modules/minimem/memory/delta" in api
    intro = (small_book / "book" / "intro.html").read_text()
    assert "20.2" in intro and "builds on" in intro


def test_browser_check_finds_typeset_math(small_book):
    chromium = check_book.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium here: the browser check runs where one is installed "
                    "(python book/check_book.py browser)")
    result = check_book.browse(small_book / "notebooks" / "20_delta_rule.html", chromium)
    assert result.get("typeset", 0) > 20 and result["raw"] == 0, result
    assert result["other_hosts"] == [], result


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_pages_ask_questions_compare_with_the_papers_and_summarise(notebook):
    text = _markdown(notebook)
    hints = re.findall(r"<details><summary>Hint</summary>(.+?)</details>", text, re.DOTALL)
    assert len(hints) >= 3, f"{notebook}: {len(hints)} questions with hints"
    assert all(h.strip() for h in hints)
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert "Paper vs minimem" in sections and "Summary" in sections, sections
    assert sections.index("Paper vs minimem") < sections.index("Summary")
    table = text.split("## Paper vs minimem", 1)[1].split("## Summary", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    assert rows and all("{cite:" in row for row in rows), f"{notebook}: uncited paper rows"
