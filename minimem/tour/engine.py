"""Tour step: gradient-check every registered op of the engine."""
TITLE = "engine: gradcheck of every op"


def run(out_dir) -> str:
    from ..autograd.registry import cases, run_case

    rows = [run_case(c) for c in cases("engine")]
    worst = max(r["max_rel_error"] for r in rows)
    n_pass = sum(r["passed"] for r in rows)
    return f"{n_pass}/{len(rows)} ops pass, worst relative error {worst:.1e}"
