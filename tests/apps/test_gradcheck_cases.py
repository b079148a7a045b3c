"""Every registered gradcheck case, one test each (what ``minimem gradcheck`` prints as a table)."""
import pytest

from minimem.autograd.registry import cases, run_case
from minimem.chapters import CHAPTERS, load_cases

load_cases()  # conftest does it too; here so that the module stands alone
CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_registered_case_passes(case):
    row = run_case(case)
    assert row["passed"], row["report"]


def test_registry_holds_every_chapter():
    assert len(CASES) >= 101
    empty = [ch.key for ch in CHAPTERS if not cases(ch.key)]
    assert not empty, f"chapters without a gradcheck case: {empty}"
