"""The ``minimem`` command: tour, gradcheck, bench, exercises, grade, ring.

Each subcommand is a thin shell over a module: ``minimem.tour``, ``minimem.bench``,
``minimem.grading``; ``gradcheck`` fills the engine's registry from every chapter
(``minimem.chapters.load_cases``) and prints the table (this module is its one front door).
"""
from __future__ import annotations

import argparse
import json
import sys


def gradcheck_rows(chapter=None, device="cpu", seed=0):
    """Gradient-check every registered case (of one chapter's key, or all): one dict per case."""
    from .autograd.registry import cases, run_case
    from .chapters import load_cases

    load_cases()
    selected = cases(chapter)
    if not selected:
        known = sorted({c.chapter for c in cases()})
        raise ValueError(f"gradcheck: no case registered for chapter {chapter!r}; known "
                         f"chapters: {', '.join(known)}")
    rows = []
    for case in selected:
        row = run_case(case, seed, device)
        row["worst_input"] = next((r.index for r in row["report"].inputs if not r.passed), None)
        rows.append(row)
    return rows


def format_gradcheck_table(rows) -> str:
    """The rows as a text table, a pass count last."""
    head = (f"{'op':28s} {'chapter':10s} {'shapes':26s} {'mode':5s} {'max rel err':>11s} "
            f"{'max abs err':>11s}  result")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['op']:28s} {r['chapter']:10s} {r['shapes'][:26]:26s} {r['mode']:5s} "
            f"{r['max_rel_error']:11.2e} {r['max_abs_error']:11.2e}  "
            f"{'pass' if r['passed'] else 'FAIL'}")
    lines.append(f"{sum(r['passed'] for r in rows)}/{len(rows)} passed")
    return "\n".join(lines)


def gradcheck_markdown(rows) -> str:
    """The rows as a Markdown table with a pass count."""
    lines = ["| op | chapter | input shapes | mode | max rel err | max abs err | time (s) "
             "| result |", "|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['chapter']} | {r['shapes']} | {r['mode']} | "
            f"{r['max_rel_error']:.2e} | {r['max_abs_error']:.2e} | {r['seconds']:.3f} | "
            f"{'pass' if r['passed'] else '**FAIL**'} |")
    lines += ["", f"{sum(bool(r['passed']) for r in rows)}/{len(rows)} cases pass (float64, "
              "central differences, pass when |analytical - numerical| <= atol + rtol "
              "|numerical|)."]
    return "\n".join(lines)


def _cmd_gradcheck(args) -> int:
    try:
        rows = gradcheck_rows(chapter=args.chapter, device=args.device)
    except (ValueError, RuntimeError) as e:  # an unknown chapter, no GPU: a message, exit 2
        print(f"minimem {e}", file=sys.stderr)
        return 2
    print(format_gradcheck_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: (bool(v) if k == "passed" else v) for k, v in r.items()
                        if k != "report"} for r in rows], f, indent=1, default=float)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# Gradient checks of every registered op\n\n" + gradcheck_markdown(rows)
                    + "\n")
    for r in rows:
        if not r["passed"]:
            print(f"\n{r['op']}:\n{r['report']}")
    return 0 if all(r["passed"] for r in rows) else 1


def _cmd_bench(args) -> int:
    from .bench import run_benchmarks

    return run_benchmarks(args.names, quick=args.quick, json_path=args.json)


def _cmd_tour(args) -> int:
    from .tour import run_tour

    return run_tour(args.out, only=args.only)


def _cmd_exercises(args) -> int:
    from .grading import exercises_cli

    return exercises_cli(args)


def _cmd_grade(args) -> int:
    from .grading import grade_cli

    return grade_cli(args)


def _cmd_ring(args) -> int:
    from .memory.reduction.ring_mpi import format_report, launch_ring

    try:
        rep = launch_ring(args.processes, args.seq_len, args.heads, args.dim, args.causal,
                          args.dtype, timeout=args.timeout)
    except (ValueError, TypeError, RuntimeError) as e:
        print(f"minimem ring: {e}", file=sys.stderr)
        return 2
    print(format_report(rep))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minimem", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tour", help="a 1-2 minute guided run of every chapter")
    t.add_argument("--out", default="tour_out", help="folder for plots (default: tour_out)")
    t.add_argument("--only", nargs="*", default=None, help="run only these steps (by key)")
    t.set_defaults(func=_cmd_tour)

    g = sub.add_parser("gradcheck", help="gradient-check every registered op and mechanism")
    g.add_argument("--chapter", default=None,
                   help="only this chapter's cases (its key: engine, nn, hopfield, delta, ...)")
    g.add_argument("--json", default=None, help="also write the table as JSON")
    g.add_argument("--markdown", default=None, help="also write the table as Markdown")
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="run the checks on this device (cuda needs CuPy and a GPU)")
    g.set_defaults(func=_cmd_gradcheck)

    b = sub.add_parser("bench", help="benchmarks with baselines timed in the same run")
    b.add_argument("names", nargs="*", help="which benchmarks (default: all); e.g. engine delta")
    b.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    b.add_argument("--json", default=None, help="write the rows as JSON")
    b.set_defaults(func=_cmd_bench)

    e = sub.add_parser("exercises", help="list exercises or release a student copy")
    esub = e.add_subparsers(dest="action", required=True)
    esub.add_parser("list", help="id, points, needs, file and task of every exercise")
    rel = esub.add_parser("release", help="write a student copy with solutions removed")
    rel.add_argument("out", help="folder to write the student copy to (must not exist)")
    rel.add_argument("--homework", action="store_true",
                     help="also withhold the code that gives answers away (fast twins, "
                          "formulas), replaced by the reference path")
    rel.add_argument("--outputs-from", default=None, metavar="DIR",
                     help="copy the outputs of these executed notebooks (e.g. "
                          "book/_build/jupyter_execute/notebooks) into the copy's notebooks")
    chk = esub.add_parser("check", help="run just the visible tests of some exercises")
    chk.add_argument("ids", help="exercise ids, comma-separated (e.g. 0.5 or 0.1,0.2)")
    e.set_defaults(func=_cmd_exercises)

    from .grading import exercises_arg, seconds_arg
    from .grading.grade import DEFAULT_BUDGET, DEFAULT_TIMEOUT

    gr = sub.add_parser("grade", help="grade a student copy with the exercise tests")
    gr.add_argument("path", nargs="?", default=".",
                    help="the student copy (default: here); with --each, a folder of them")
    gr.add_argument("--json", default=None,
                    help="write Gradescope's results.json here (with --each: a folder)")
    gr.add_argument("--timeout", type=seconds_arg, default=DEFAULT_TIMEOUT,
                    help=f"seconds per test (default {DEFAULT_TIMEOUT:g})")
    gr.add_argument("--budget", type=seconds_arg, default=DEFAULT_BUDGET,
                    help=f"seconds per submission, all tests together (default "
                         f"{DEFAULT_BUDGET:g}); tests not started by then are not run")
    gr.add_argument("--exercises", type=exercises_arg, default=None,
                    help="grade only these exercise ids, comma-separated (e.g. 0.1,0.3)")
    gr.add_argument("--isolation", default="auto",
                    choices=["auto", "namespace", "permissions", "none"],
                    help="how the student's code is isolated (default: the strongest "
                         "available; see the README's threat model)")
    gr.add_argument("--each", action="store_true",
                    help="PATH holds one folder per submission: grade each of them")
    gr.set_defaults(func=_cmd_grade)

    r = sub.add_parser("ring", help="ring attention on P MPI processes vs dense attention")
    r.add_argument("--processes", type=int, default=2, help="MPI processes P (default 2)")
    r.add_argument("--seq-len", type=int, default=1024, help="sequence length T (P divides T)")
    r.add_argument("--heads", type=int, default=2, help="heads H (default 2)")
    r.add_argument("--dim", type=int, default=32, help="head size D (default 32)")
    r.add_argument("--causal", action="store_true", help="causal attention")
    r.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    r.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    r.set_defaults(func=_cmd_ring)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
