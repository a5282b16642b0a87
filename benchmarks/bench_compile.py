"""Compile time of the log density for nutpie: nutpie's own compile against ckmodel's.

Each timing runs in a fresh Python process (as a user's next fit does), builds the fused
PyMC model of ``--model`` on the example trial (or ``--data sim``: ``--n`` subjects simulated
from the model, ``bench_fit.simulated_data``) and times only the
compile: ``nutpie.compile_pymc_model`` (numba compiles and links its two C callbacks every
time) against :func:`ckmodel.fitting.nutpie_compile.compile_nutpie` (the callbacks loaded from
PyTensor's numba cache after a first run). Prints min / median / max over ``--repeat`` runs
and the ratio of medians.

    python benchmarks/bench_compile.py                         # blood_marrow, example trial
    python benchmarks/bench_compile.py --model expansion_biphasic --data sim   # sim40
    python benchmarks/bench_compile.py --model antigen_driven --data sim --n 30 --repeat 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = """
import time, warnings
warnings.simplefilter("ignore")
from ckmodel.population.model import build_model
from ckmodel.population.prepare import prepare
from ckmodel.spec import load_model
spec = load_model({model!r})
if {data!r} == "sim":
    import sys
    sys.path.insert(0, {here!r})
    from bench_fit import simulated_data
    ck = simulated_data(spec.name, n={n})
else:
    from ckmodel.data import read_ck
    from ckmodel.resources import example_data
    path, outcomes = example_data("example_trial")
    ck = read_ck(path, outcomes=outcomes, analytes=spec.output_units)
model = build_model(spec, prepare(ck, spec), fused=True)
t = time.perf_counter()
if {how!r} == "nutpie":
    import nutpie
    nutpie.compile_pymc_model(model)
else:
    from ckmodel.fitting.nutpie_compile import compile_nutpie
    compile_nutpie(model)
print(time.perf_counter() - t)
"""


def _time(model: str, data: str, how: str, n: int) -> float:
    code = _CHILD.format(model=model, data=data, how=how, n=int(n),
                         here=str(Path(__file__).resolve().parent))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="blood_marrow")
    ap.add_argument("--data", choices=("example", "sim"), default="example")
    ap.add_argument("--n", type=int, default=40, help="subjects with --data sim")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    _time(args.model, args.data, "ckmodel", args.n)     # fills the cache (first fit ever)
    rows = {}
    for how in ("nutpie", "ckmodel"):
        times = [_time(args.model, args.data, how, args.n) for _ in range(args.repeat)]
        rows[how] = times
        print(f"{how:8s} compile s: min {min(times):.2f}, median "
              f"{statistics.median(times):.2f}, max {max(times):.2f}", flush=True)
    ratio = statistics.median(rows["nutpie"]) / statistics.median(rows["ckmodel"])
    print(f"{args.model} on {args.data}: ckmodel's cached compile {ratio:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
