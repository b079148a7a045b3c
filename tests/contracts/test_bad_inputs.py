"""Every row of the contract table: the bad input raises the promised error type, and the
message starts with the name of the entry point the user called (DESIGN.md, "Input
contracts"). The valid call of each entry point runs, so a row tests its argument, not a
typo in the table."""
import re

import pytest
from census import bad_call, cases
from contract_table import ENTRIES

CASES = cases()


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.group}/{e.name}" for e in ENTRIES])
def test_valid_call_runs(entry):
    entry.call(**entry.valid())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_clearly(case):
    _, entry, arg, mutation = case
    prefix = re.escape(entry.name.split(".")[0])
    with pytest.raises(mutation.exc, match=rf"^{prefix}"):
        bad_call(entry, arg, mutation)
