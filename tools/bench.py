"""Benchmarks of venvstacks, each measured against a baseline taken in the same run.

    python tools/bench.py [--runs N] [--python PYTHON]

Prints a table: for every row, the median wall time of the measured command,
the median of its baseline, the difference, and the target it must meet.
Later issues add rows; timed assertions never go into the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import build_zipapp  # noqa: E402

SEED_SPEC = """\
[[runtimes]]
name = "cpython@3.11"
python_implementation = "cpython@3.11.10"
requirements = ["numpy"]

[[frameworks]]
name = "sklearn"
runtime = "cpython@3.11"
requirements = ["scikit-learn"]

[[applications]]
name = "classification-demo"
launch_module = "launch_modules/sklearn_classification.py"
frameworks = ["sklearn"]
requirements = ["scikit-learn"]

[[applications]]
name = "clustering-demo"
launch_module = "launch_modules/sklearn_clustering.py"
frameworks = ["sklearn"]
requirements = ["scikit-learn"]
"""


@dataclass(frozen=True)
class Row:
    """One benchmark: a command, its baseline, and the allowed overhead."""

    name: str
    command: Sequence[str]
    baseline_name: str
    baseline: Sequence[str]
    max_overhead_ms: float | None
    """Target: at most this many milliseconds over the baseline (None: report only)."""


def _time_once(command: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - start) * 1000


def _interleaved(row: Row, runs: int) -> tuple[float, float]:
    # Alternate the two commands so that background load affects both alike.
    _time_once(row.command)
    _time_once(row.baseline)
    measured: list[float] = []
    base: list[float] = []
    for _ in range(runs):
        measured.append(_time_once(row.command))
        base.append(_time_once(row.baseline))
    return statistics.median(measured), statistics.median(base)


def _rows(python: str, pyz: Path, spec: Path) -> list[Row]:
    bare = [python, "-c", "pass"]
    return [
        Row("pyz --help", [python, str(pyz), "--help"], "python -c pass", bare, 40.0),
        Row("pyz --version", [python, str(pyz), "--version"], "python -c pass", bare, 40.0),
        Row("pyz show (seed example)", [python, str(pyz), "show", str(spec)], "python -c pass", bare, None),
        Row("pyz show --json (seed example)", [python, str(pyz), "show", "--json", str(spec)], "python -c pass", bare, None),
    ]


def _seed_example(folder: Path) -> Path:
    launch = folder / "launch_modules"
    launch.mkdir()
    for name in ("sklearn_classification.py", "sklearn_clustering.py"):
        (launch / name).write_text("print('ok')\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(SEED_SPEC, encoding="utf-8")
    return spec


def _print_table(results: list[tuple[Row, float, float]], out: Callable[[str], None]) -> bool:
    header = f"{'benchmark':32} {'median ms':>10} {'baseline':>16} {'base ms':>8} {'over ms':>8} {'target':>10}  verdict"
    out(header)
    out("-" * len(header))
    all_ok = True
    for row, measured, base in results:
        over = measured - base
        if row.max_overhead_ms is None:
            target, verdict = "-", "info"
        else:
            target = f"<= +{row.max_overhead_ms:g}"
            ok = over <= row.max_overhead_ms
            all_ok &= ok
            verdict = "ok" if ok else "MISSED"
        out(f"{row.name:32} {measured:10.1f} {row.baseline_name:>16} {base:8.1f} {over:8.1f} {target:>10}  {verdict}")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run the zipapp with")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pyz = build_zipapp.build(folder / "venvstacks.pyz")
        spec = _seed_example(folder)
        results = []
        for row in _rows(args.python, pyz, spec):
            measured, base = _interleaved(row, args.runs)
            results.append((row, measured, base))
        print(f"python: {args.python} ({sys.version.split()[0]}), {args.runs} runs per command, medians")
        ok = _print_table(results, print)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
