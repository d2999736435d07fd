r"""Run the benchmark suite: print a table, write JSON and a log-log plot.

Usage (from the repository root)::

    python -m benchmarks.run                       # full suite (15-25 min on 2 cores, and
                                                   # about an hour more for train)
    python -m benchmarks.run --quick               # smoke test, seconds
    python -m benchmarks.run --sections updates --sizes 1024 2048 --ranks 1 \
        --dtypes float64 --json results.json --plot scaling.png

Every section module ``benchmarks/bench_<name>.py`` exposes ``run(quick) ->
list[dict]`` rows ``{"section", "case", "params", "time_s", "ratios"}``; all
variants of a row are timed in the same process (medians after a warm-up), and
the ratios are what to compare across machines, not the absolute times.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

SECTIONS = ("updates", "small", "sketch", "conv", "drift", "contention", "torch_optim", "sharding",
            "dask", "runtime", "train")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def print_table(rows: list[dict], stream=sys.stdout) -> None:
    """One block per section: case, median time and every ratio of the row."""
    for section in dict.fromkeys(r["section"] for r in rows):
        block = [r for r in rows if r["section"] == section]
        keys = list(dict.fromkeys(k for r in block for k in r["ratios"]))
        width = max(len(r["case"]) for r in block)
        print(f"\n== {section} ==", file=stream)
        print(f"{'case':<{width}}  {'median s':>10}  " + "  ".join(f"{k:>18}" for k in keys),
              file=stream)
        for r in block:
            cells = "  ".join(f"{_fmt(r['ratios'].get(k)):>18}" for k in keys)
            print(f"{r['case']:<{width}}  {_fmt(r['time_s']):>10}  {cells}", file=stream)


def plot_scaling(rows: list[dict], path: str) -> None:
    """Log-log plot of time against n: low-rank updates (k = 1) and dense ones, float64."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    upd = [r for r in rows if r["section"] == "updates" and r["params"]["k"] == 1
           and r["params"]["dtype"] == "float64"]
    if not upd:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    names = {"polar": ("project", "scipy.linalg.polar"), "exp": ("transport", "expm"),
             "cayley": ("retract cayley", "dense Cayley solve")}
    for m, (low, dense) in names.items():
        pts = sorted((r["params"]["n"], r["time_s"], r["params"]["dense_s"])
                     for r in upd if r["params"]["method"] == m)
        ns = [p[0] for p in pts]
        line = ax.loglog(ns, [p[1] for p in pts], "o-", label=f"{low} (k=1)")[0]
        dn = [(p[0], p[2]) for p in pts if p[2]]
        if dn:
            ax.loglog([d[0] for d in dn], [d[1] for d in dn], "s--", color=line.get_color(),
                      label=dense)
    copy = sorted({(r["params"]["n"], r["params"]["copy_s"]) for r in upd})
    ax.loglog([c[0] for c in copy], [c[1] for c in copy], "k:", label="U.copy()")
    n0, t0 = copy[0]
    ns = [c[0] for c in copy]
    ax.loglog(ns, [t0 * (n / n0) ** 2 for n in ns], color="0.7", lw=0.8, label="∝ n²")
    dense_pts = [(r["params"]["n"], r["params"]["dense_s"]) for r in upd
                 if r["params"]["method"] == "polar" and r["params"]["dense_s"]]
    if dense_pts:
        n1, t1 = min(dense_pts)
        ax.loglog(ns, [t1 * (n / n1) ** 3 for n in ns], color="0.4", lw=0.8, label="∝ n³")
    ax.set_xlabel("n")
    ax.set_ylabel("seconds (median)")
    ax.set_title("Rank-1 updates of an n×n orthogonal matrix (float64)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (CI smoke)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--sizes", nargs="+", type=int, help="updates section: sizes n")
    ap.add_argument("--ranks", nargs="+", type=int, help="updates section: ranks k")
    ap.add_argument("--dtypes", nargs="+", help="updates section: dtypes")
    ap.add_argument("--dense-max-n", type=int, default=4096,
                    help="largest n for the dense O(n³) baselines (default 4096)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS and numba threads (default 1: on a shared 2-core machine a "
                         "second BLAS thread made 128x15360 products 27x slower, and U.copy(), "
                         "the memory floor, is single-threaded)")
    ap.add_argument("--json", metavar="PATH", help="write rows and machine info as JSON")
    ap.add_argument("--plot", metavar="PATH", help="write the log-log scaling plot (PNG)")
    args = ap.parse_args(argv)
    if "numpy" in sys.modules:
        print("warning: NumPy was imported before the thread settings", file=sys.stderr)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    rows: list[dict] = []
    start = time.perf_counter()
    for name in args.sections:
        try:
            mod = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError as exc:
            print(f"section {name}: skipped ({exc})", file=sys.stderr)
            continue
        if name == "updates":
            rows += mod.run(args.quick, sizes=args.sizes, ranks=args.ranks, dtypes=args.dtypes,
                            dense_max_n=args.dense_max_n)
        else:
            rows += mod.run(args.quick)
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    print_table(rows)
    if args.json:
        import numpy as np

        info = {"python": platform.python_version(), "machine": platform.machine(),
                "processor": platform.processor(), "numpy": np.__version__,
                "cpus": os.cpu_count(), "threads": args.threads,
                "time": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick}
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1,
                                              default=float))
    if args.plot:
        plot_scaling(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
