"""Run the three gradient-check experiments: eps sweep, all-op table, planted bugs.

``make gradcheck`` calls it after ``minimem gradcheck``. Outputs go to ``gradcheck/out/``
(or ``--out DIR``). Exits with the largest exit code of the three.
Usage: ``python gradcheck/run_all.py [--out DIR] [--quick]``.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eps_sweep
import op_table
import planted_bug
from _common import parse


def main(argv=None) -> int:
    args = parse(argv, __doc__.splitlines()[0])
    common = ["--out", str(args.out)] + (["--quick"] if args.quick else [])
    codes = {}
    for name, module in (("eps_sweep", eps_sweep), ("op_table", op_table),
                         ("planted_bug", planted_bug)):
        print(f"\n##### {name} #####")
        t0 = time.perf_counter()
        codes[name] = module.main(common)
        print(f"({name}: {time.perf_counter() - t0:.1f} s, exit code {codes[name]})")
    print("\n" + ", ".join(f"{k}: {'ok' if v == 0 else 'FAILED'}" for k, v in codes.items()))
    return max(codes.values())


if __name__ == "__main__":
    sys.exit(main())
