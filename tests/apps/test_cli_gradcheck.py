"""``minimem gradcheck``: the one front door of the gradient-check table."""
import json

import pytest

from minimem import cli


def test_gradcheck_rows_of_the_engine():
    rows = cli.gradcheck_rows(chapter="engine")
    assert len(rows) >= 47 and all(r["passed"] for r in rows)
    assert all(r["worst_input"] is None for r in rows)
    assert {"op", "chapter", "shapes", "mode", "max_rel_error", "max_abs_error", "seconds",
            "passed"} <= set(rows[0])
    text = cli.gradcheck_markdown(rows)
    assert text.splitlines()[0].startswith("| op | chapter |")
    assert f"{len(rows)}/{len(rows)} cases pass" in text
    assert "| softmax | engine | 3x5 | full |" in text
    table = cli.format_gradcheck_table(rows)
    assert table.splitlines()[-1] == f"{len(rows)}/{len(rows)} passed"
    with pytest.raises(ValueError, match="gradcheck: no case registered for chapter"):
        cli.gradcheck_rows(chapter="no such chapter")


def test_tables_mark_failures():
    rows = [{"op": "bad", "chapter": "x", "shapes": "2", "mode": "full", "max_rel_error": 1.0,
             "max_abs_error": 0.5, "seconds": 0.01, "passed": False}]
    assert "**FAIL**" in cli.gradcheck_markdown(rows)
    assert "0/1 cases pass" in cli.gradcheck_markdown(rows)
    assert "FAIL" in cli.format_gradcheck_table(rows).splitlines()[2]


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    js, md = tmp_path / "t.json", tmp_path / "t.md"
    assert cli.main(["gradcheck", "--chapter", "hopfield", "--json", str(js),
                     "--markdown", str(md)]) == 0
    rows = json.loads(js.read_text())
    assert len(rows) == 8 and all(r["passed"] is True and r["chapter"] == "hopfield"
                                  for r in rows)
    assert "8/8 cases pass" in md.read_text()
    assert "8/8 passed" in capsys.readouterr().out
