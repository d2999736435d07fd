"""Check a saved benchmark run against the project's speed targets.

Usage::

    python -m benchmarks.summary benchmarks/results/cpu2-full.json

Prints one line per target with the measured figure and whether it is met.
Only figures present in the file are reported (a target whose rows were not
run is listed as "not measured").
"""

from __future__ import annotations

import json
import sys


def _row(rows, method, n, k, dtype):
    for r in rows:
        p = r["params"]
        if r["section"] == "updates" and (p["method"], p["n"], p["k"], p["dtype"]) == (
                method, n, k, dtype):
            return r
    return None


def targets(rows: list[dict]) -> list[tuple[str, float | None, str, bool | None]]:
    """(target, measured value, how it compares, met) for each speed target."""
    out = []
    for method, name in (("polar", "project"), ("exp", "transport")):
        for n, k, limit in ((4096, 1, 2.5), (2048, 1, 3.0), (2048, 4, 4.0)):
            r = _row(rows, method, n, k, "float64")
            v = r["ratios"]["over_copy"] if r else None
            out.append((f"{name} n={n} k={k} float64: time / U.copy()", v, f"<= {limit}",
                        None if v is None else v <= limit))
    r = _row(rows, "polar", 2048, 1, "float64")
    v = r["ratios"].get("dense_over_lowrank") if r else None
    out.append(("n=2048 k=1 float64: scipy.linalg.polar / project", v, ">= 500",
                None if v is None else v >= 500))
    p = r["params"] if r else {}
    v = p["dense_s"] / p["pool_off_s"] if p.get("dense_s") and p.get("pool_off_s") else None
    out.append(("  the same, result pool off (fresh memory, for reference)", v, "", None))
    conv = [r for r in rows if r["section"] == "conv" and r["case"].startswith("project")]
    v = conv[0]["ratios"].get("dense_svd_polar / this") if conv else None
    out.append(("conv 1024 x 64x64 k=1 complex64: batched SVD polar / project", v, ">= 20",
                None if v is None else v >= 20))
    for method, name in (("polar", "project"), ("exp", "transport")):
        r = _row(rows, method, 4096, 1, "float32")
        v = r["ratios"].get("float64_over_float32") if r else None
        out.append((f"{name} n=4096 k=1: float64 time / float32 time", v, ">= 1.6",
                    None if v is None else v >= 1.6))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the targets of the benchmark file given on the command line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m benchmarks.summary RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        data = json.load(f)
    print(f"machine: {data['machine']}")
    for what, value, bound, met in targets(data["rows"]):
        shown = "not measured" if value is None else f"{value:.3g}"
        verdict = "" if met is None else ("met" if met else "MISSED")
        print(f"{what:<62} {shown:>12}  {bound:<8} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
