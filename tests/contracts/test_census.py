"""The census of the contract table (census.py), in process: every bad input ends in a clear
error. ``pytest -s`` prints the counts; ``python tests/contracts/census.py`` also counts
crashes, by running the cases in child processes."""
import collections

from census import cases, classify
from contract_table import ENTRIES


def test_census_every_bad_input_gets_a_clear_error():
    outcomes = collections.Counter()
    unclear = []
    for cid, entry, arg, mutation in cases():
        cls, exc, msg = classify(entry, arg, mutation)
        outcomes[cls] += 1
        if cls != "clear":
            unclear.append(f"{cls}: {cid} -> {exc} {msg[:120]}")
    points = {(e.group, e.name) for e in ENTRIES}
    print(f"\ncontract census: {len(points)} entry points, {sum(outcomes.values())} bad inputs; "
          + ", ".join(f"{c} {outcomes.get(c, 0)}" for c in ("clear", "opaque", "silent")))
    assert len(points) >= 230 and sum(outcomes.values()) >= 2300
    assert not unclear, "\n".join(unclear)


def _emptied(v):
    """``v`` with its row axis (second to last, or only) emptied; None when not an array."""
    import numpy as np

    import minimem as mm

    if isinstance(v, mm.Tensor):
        a = v.numpy()
    elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
        a = v
    else:
        return None
    a = a[..., :0, :] if a.ndim >= 2 else a[:0]
    return mm.Tensor(a) if isinstance(v, mm.Tensor) else a


def test_empty_axes_give_a_defined_result_or_a_clear_error():
    """T = 0, N = 0, B = 0: every entry point either returns (an empty result) or raises a
    ValueError/TypeError that names it, never a raw NumPy/Numba error."""
    from contract_table import Mutation

    opaque = []
    for entry in ENTRIES:
        for arg, value in entry.valid().items():
            if _emptied(value) is None:
                continue
            m = Mutation("an empty axis", lambda v: _emptied(v), ValueError)
            cls, exc, msg = classify(entry, arg, m)
            if cls == "opaque":
                opaque.append(f"{entry.group}/{entry.name}/{arg}: {exc} {msg[:100]}")
    assert not opaque, "\n".join(opaque)
