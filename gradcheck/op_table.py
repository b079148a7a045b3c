"""The all-op table: every case of the gradcheck registry, float64, full Jacobians.

Each chapter registers its differentiable ops and mechanisms in its ``cases.py``; this script
asks the CLI (``minimem gradcheck``, the table's one front door) to run them all and to write
``out/op_table.md`` and ``out/op_table.json`` (one row per case: op, chapter, input shapes,
mode, max relative and absolute error, time, pass). It exits with 1 when a case fails.
Usage: ``python gradcheck/op_table.py [--out DIR] [--chapter KEY]``.
"""
import sys

from _common import parse

from minimem import cli


def main(argv=None) -> int:
    args = parse(argv, __doc__.splitlines()[0],
                 extra=lambda p: p.add_argument("--chapter", default=None,
                                                help="only this chapter's cases (its key)"))
    code = cli.main(["gradcheck", "--json", str(args.out / "op_table.json"),
                     "--markdown", str(args.out / "op_table.md")]
                    + (["--chapter", args.chapter] if args.chapter else []))
    print(f"wrote {args.out / 'op_table.md'} and op_table.json")
    return code


if __name__ == "__main__":
    sys.exit(main())
