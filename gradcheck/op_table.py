"""The all-op table: every case of the gradcheck registry, float64, full Jacobians.

Each chapter registers its differentiable ops and mechanisms next to their code
(``minimem.autograd.registry.register``); this script runs them all
(``minimem.autograd.experiments.op_table``) and writes ``out/op_table.md`` and
``out/op_table.json`` (one row per case: op, chapter, input shapes, mode, max relative and
absolute error, time, pass). It exits with 1 when a case fails.
Usage: ``python gradcheck/op_table.py [--out DIR] [--chapter NAME]``.
"""
import json
import sys

from _common import parse

from minimem.autograd.experiments import op_table, op_table_markdown


def main(argv=None) -> int:
    args = parse(argv, __doc__.splitlines()[0],
                 extra=lambda p: p.add_argument("--chapter", default=None,
                                                help="only this chapter's cases"))
    rows = op_table(chapter=args.chapter)
    text = op_table_markdown(rows)
    (args.out / "op_table.md").write_text("# Gradient checks of every registered op\n\n"
                                          + text + "\n")
    with open(args.out / "op_table.json", "w") as f:
        json.dump([{k: (bool(v) if k == "passed" else v) for k, v in r.items()} for r in rows],
                  f, indent=1, default=float)
    print(text)
    print(f"wrote {args.out / 'op_table.md'} and op_table.json")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
