"""Shared by the gradcheck/ scripts: the output folder and argument parsing."""
import argparse
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def parse(argv, description, extra=None):
    """``--out DIR`` (created) and ``--quick``; ``extra(parser)`` adds script-specific options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=str(OUT), help=f"output folder (default: {OUT})")
    p.add_argument("--quick", action="store_true", help="fewer points, for a smoke test")
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
