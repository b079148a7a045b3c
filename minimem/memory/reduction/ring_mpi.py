"""Ring attention on P real processes: the program ``mpiexec`` runs, and its launcher.

``python -m minimem.memory.reduction.ring_mpi --seq-len T ...`` is what every rank runs:
each draws the same q, k, v, dO (seeded), keeps its block of the sequence, runs
:func:`~minimem.memory.reduction.ring.ring_attention` forward and backward, and sends its
output, its gradients and its peak traced bytes (``tracemalloc``; NumPy reports its arrays
there) to rank 0, which compares them with dense attention on the whole sequence and prints
(or writes as JSON) the differences. :func:`launch_ring` starts it with the ``mpiexec`` of
the MPI installed beside this Python (the ``mpich`` wheel of the ``distributed`` extra);
:func:`launch_ring_sweep` runs several process counts in one launch (sub-communicators of
the first P ranks).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tracemalloc

import numpy as np

from ...checks import check_bool, check_choice, check_int, check_real

DTYPES = ("float64", "float32")


def mpiexec_path():
    """The ``mpiexec`` next to this interpreter (the venv's), else the one on PATH, or None."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


def have_mpi():
    """True when mpi4py imports and an ``mpiexec`` is found."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return mpiexec_path() is not None


def launch_ring(processes, seq_len, heads=2, dim=16, causal=True, dtype="float64", batch=1,
                seed=0, timeout=120):
    """Run ring attention on ``processes`` MPI processes; returns rank 0's report (a dict).

    The report: ``max_diff`` (output, dq, dk, dv: largest ``abs(ring - dense)``), ``peak_bytes``
    (one entry per process) and the arguments.
    """
    fn = "launch_ring"
    P = check_int(fn, "processes", processes, low=1)
    T = check_int(fn, "seq_len", seq_len, low=1)
    check_int(fn, "heads", heads, low=1)
    check_int(fn, "dim", dim, low=1)
    check_int(fn, "batch", batch, low=1)
    check_int(fn, "seed", seed, low=0)
    check_bool(fn, "causal", causal)
    check_choice(fn, "dtype", dtype, DTYPES)
    if T % P:
        raise ValueError(f"{fn}: seq_len = {T} must be divisible by processes = {P}")
    args = ["--seq-len", str(T), "--heads", str(heads), "--dim", str(dim), "--batch",
            str(batch), "--seed", str(seed), "--dtype", dtype, "--json", "-"]
    return _mpiexec(fn, P, args + (["--causal"] if causal else []), timeout)


def launch_ring_sweep(processes=(2, 4), per_process=256, heads=2, dim=32, causal=True,
                      dtype="float64", seed=0, batch=1, timeout=300):
    """One ``mpiexec`` of max(processes) ranks that runs ring attention on the first P ranks
    for each P, with the context growing as P x ``per_process``; a list of reports (one per
    P and mask). ``causal``: True, False, or ``"both"`` (each P causal, then not)."""
    fn = "launch_ring_sweep"
    sizes = [check_int(fn, "processes", P, low=1) for P in processes]
    check_int(fn, "per_process", per_process, low=1)
    for name, val in (("heads", heads), ("dim", dim)):
        check_int(fn, name, val, low=1)
    check_int(fn, "seed", seed, low=0)
    check_int(fn, "batch", batch, low=1)
    if causal != "both":
        check_bool(fn, "causal", causal)
    check_choice(fn, "dtype", dtype, DTYPES)
    args = ["--sweep", ",".join(map(str, sizes)), "--per-process", str(per_process),
            "--heads", str(heads), "--dim", str(dim), "--seed", str(seed), "--dtype", dtype,
            "--batch", str(batch)]
    masks = {"both": ["--causal", "--also-full"], True: ["--causal"], False: []}[causal]
    return _mpiexec(fn, max(sizes), args + masks, timeout)


def _mpiexec(fn, n, args, timeout):
    """Run this module on n ranks; the last JSON line rank 0 prints."""
    check_real(fn, "timeout", timeout, low=0, low_open=True)
    exe = mpiexec_path()
    if exe is None:
        raise RuntimeError(f"{fn}: no mpiexec found; pip install 'minimem[distributed]'")
    cmd = [exe, "-n", str(n), sys.executable, "-m", __name__] + args
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{fn}: mpiexec ran past {timeout} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{fn}: mpiexec exited {done.returncode}:\n{done.stderr[-2000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("{", "["))]
    if not lines:
        raise RuntimeError(f"{fn}: no report from rank 0; stdout:\n{done.stdout[-2000:]}")
    return json.loads(lines[-1])


def format_report(rep):
    """The report as the lines ``minimem ring`` prints."""
    lines = [(f"ring attention on {rep['processes']} processes: T = {rep['seq_len']}, "
              f"H = {rep['heads']}, D = {rep['dim']}, causal = {rep['causal']}, "
              f"{rep['dtype']}"),
             "max |ring - dense|: " + ", ".join(f"{k} {v:.2e}"
                                                for k, v in rep["max_diff"].items())]
    peaks = rep["peak_bytes"]
    lines.append("peak traced bytes per process: " + ", ".join(f"{p / 2**20:.2f} MiB"
                                                                for p in peaks))
    lines.append(f"dense attention on one process: {rep['dense_peak_bytes'] / 2**20:.2f} MiB")
    return "\n".join(lines)


def _inputs(args, seq_len):
    rng = np.random.default_rng(args.seed)
    shape = (args.batch, args.heads, seq_len, args.dim)
    return [rng.standard_normal(shape).astype(args.dtype) for _ in range(4)]


def _dense(q, k, v, do, causal):
    from ...autograd import Tensor
    from ...nn import scaled_dot_product_attention

    leaves = [Tensor(x, requires_grad=True) for x in (q, k, v)]
    scaled_dot_product_attention(*leaves, causal=causal).backward(Tensor(do))  # JIT warm-up
    for t in leaves:
        t.grad = None
    tracemalloc.start()
    o = scaled_dot_product_attention(*leaves, causal=causal)
    o.backward(Tensor(do))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return [o.data] + [t.grad.data for t in leaves], peak


def _run_rank(args, comm, seq_len):
    """Ring attention of a sequence of ``seq_len`` on the processes of ``comm``; the report
    on its rank 0 (None elsewhere)."""
    from ...autograd import Tensor
    from .ring import ring_attention

    P, r = comm.Get_size(), comm.Get_rank()
    q, k, v, do = _inputs(args, seq_len)
    b = seq_len // P
    mine = [np.ascontiguousarray(x[:, :, r * b:(r + 1) * b]) for x in (q, k, v, do)]
    leaves = [Tensor(x, requires_grad=True) for x in mine[:3]]
    tracemalloc.start()
    o = ring_attention(*leaves, causal=args.causal, comm=comm)
    o.backward(Tensor(mine[3]))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    got = comm.gather(([o.data] + [t.grad.data for t in leaves], peak), root=0)
    if r != 0:
        return None
    ring = [np.concatenate([g[0][i] for g in got], axis=2) for i in range(4)]
    dense, dense_peak = _dense(q, k, v, do, args.causal)
    names = ("output", "dq", "dk", "dv")
    return {"processes": P, "seq_len": seq_len, "heads": args.heads, "dim": args.dim,
            "batch": args.batch, "causal": args.causal, "dtype": args.dtype,
            "max_diff": {n: float(np.abs(a - d).max()) for n, a, d in zip(names, ring, dense)},
            "peak_bytes": [int(g[1]) for g in got], "dense_peak_bytes": int(dense_peak)}


def main(argv=None):
    p = argparse.ArgumentParser(description="one rank of ring attention (run by mpiexec)")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--sweep", default=None,
                   help="comma-separated process counts P, each on the first P ranks with "
                        "seq_len = P x --per-process (one launch for a whole curve)")
    p.add_argument("--per-process", type=int, default=256)
    p.add_argument("--also-full", action="store_true",
                   help="with --sweep --causal: run each P non-causal as well")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float64", choices=DTYPES)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--json", default=None, help="'-' prints the report as one JSON line")
    args = p.parse_args(argv)
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if args.sweep:
        reports = []
        masks = [args.causal] + ([False] if args.also_full and args.causal else [])
        for P in (int(n) for n in args.sweep.split(",")):
            sub = world.Split(0 if world.Get_rank() < P else MPI.UNDEFINED)
            if sub != MPI.COMM_NULL:
                for causal in masks:
                    args.causal = causal
                    reports.append(_run_rank(args, sub, P * args.per_process))
                args.causal = masks[0]
                sub.Free()
        if world.Get_rank() == 0:
            print(json.dumps(reports), flush=True)
        return 0
    rep = _run_rank(args, world, args.seq_len)
    if rep is None:
        return 0
    if args.json == "-":
        print(json.dumps(rep), flush=True)
    else:
        print(format_report(rep))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
