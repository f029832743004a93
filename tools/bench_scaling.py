"""How publish, deploy and no-op lock/build scale with layer size and layer count.

Used by ``python tools/bench.py --scaling [--scaling-runs N]``; see docs/benchmarks.md.

* Layer size: three stacks, each a CPython runtime (no packages) and one
  framework whose only requirement is a generated local wheel of about 10 MB,
  100 MB or 1 GB of installed files. Times ``publish --force`` (tar.xz and
  tar.gz), ``deploy`` of the tar.gz archives and, as a baseline, ``tar -xf`` of
  the same archives; records the peak resident memory of every publish.
* Layer count: stacks of 2, 5, 10 and 20 layers (a runtime, frameworks on the
  runtime or on other frameworks, applications on top, each with one small local
  wheel). Times ``publish --force`` (tar.gz), ``deploy``, ``tar -xf`` and the
  no-op ``lock --if-needed`` and ``build`` (nothing changed since the last build).

Everything (wheels, stacks, a private uv cache, archives, deployments) lives in one
scratch folder that the caller removes at the end; deployed copies and archives go
after each run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MB = 1_000_000
SIZES = (("10mb", 10 * MB), ("100mb", 100 * MB), ("1gb", 1000 * MB))
"""Payload wheels: label and installed bytes (decimal megabytes)."""
COUNTS = (2, 5, 10, 20)
MEMORY_TARGET = 100 * MB
"""Peak resident memory allowed while publishing the 1 GB layer."""

_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
_BLOCK = 1 << 18
# Three quarters of all byte values become 0 and the rest one of 15 others: about 1.8 bits
# of entropy a byte, roughly like the code and data sections of compiled libraries.
_LOW_ENTROPY = bytes(0 if b < 192 else 1 + (b % 15) * 17 for b in range(256))


# --- Generated wheels ---------------------------------------------------------------------


def _text_pool(rng: random.Random, size: int) -> bytes:
    """Repetitive, valid Python source text of at least `size` bytes."""
    words = ["value", "index", "count", "total", "item", "offset", "result", "buffer", "layer", "stack"]
    lines: list[str] = []
    length = 0
    number = 0
    while length < size:
        a, b = rng.choice(words), rng.choice(words)
        line = f"def {a}_{number}({b}, scale={number % 97}):\n    return {b} * scale + {rng.randrange(1000)}\n\n"
        lines.append(line)
        length += len(line)
        number += 1
    return "".join(lines).encode("ascii")


def _blob(rng: random.Random, size: int, text: bytes) -> Iterator[bytes]:
    """`size` bytes that compress roughly like compiled binaries (to about a third).

    Blocks of 256 KiB: 15% random bytes, half low-entropy bytes, the rest slices of source text.
    """
    left = size
    while left > 0:
        n = min(_BLOCK, left)
        kind = rng.random()
        if kind < 0.15:
            chunk = rng.randbytes(n)
        elif kind < 0.65:
            chunk = rng.randbytes(n).translate(_LOW_ENTROPY)
        else:
            start = rng.randrange(len(text) - n)
            chunk = text[start : start + n]
        yield chunk
        left -= n


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_wheel(folder: Path, name: str, size: int, seed: int, *, modules: int = 10) -> Path:
    """Write `<name>-1.0-py3-none-any.whl` holding about `size` bytes of installed files.

    `modules` small .py files (package `<name>`), the rest data files of 1-4 MB under
    `<name>/data/` (one smaller file when `size` is small). Data members are stored,
    not deflated, so that writing a 1 GB wheel takes seconds; the same seed gives the
    same bytes.
    """
    rng = random.Random(seed)
    text = _text_pool(rng, 1 << 20)
    path = folder / f"{name}-1.0-py3-none-any.whl"
    dist_info = f"{name}-1.0.dist-info"
    records: list[str] = []

    def member(zf: zipfile.ZipFile, arcname: str, chunks: Iterator[bytes] | bytes, *, deflate: bool) -> int:
        info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        digest, written = hashlib.sha256(), 0
        with zf.open(info, "w", force_zip64=True) as out:
            for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
                digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
        records.append(f"{arcname},{_record_hash(digest.digest())},{written}")
        return written

    with zipfile.ZipFile(path, "w") as zf:
        total = member(zf, f"{name}/__init__.py", f'"""Generated payload ({size} bytes)."""\n'.encode(), deflate=True)
        for index in range(modules):
            start = rng.randrange(len(text) // 2)
            source = text[start:]
            source = source[source.index(b"\ndef ") + 1 :][: rng.randint(2_000, 16_000)]
            source = source[: source.rindex(b"\n\n") + 2]
            total += member(zf, f"{name}/module_{index:02d}.py", source, deflate=True)
        number = 0
        while total < size:
            part = min(size - total, rng.randint(1 * MB, 4 * MB))
            total += member(zf, f"{name}/data/blob_{number:04d}.bin", _blob(rng, part, text), deflate=False)
            number += 1
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nSummary: generated benchmark payload\n"
        member(zf, f"{dist_info}/METADATA", metadata.encode(), deflate=True)
        wheel = "Wheel-Version: 1.0\nGenerator: venvstacks-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        member(zf, f"{dist_info}/WHEEL", wheel.encode(), deflate=True)
        records.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, "\n".join(records) + "\n")
    return path


# --- Stacks -------------------------------------------------------------------------------

_RUNTIME = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = []
"""


def size_spec(version: str, label: str) -> str:
    return _RUNTIME.format(version=version) + f"""
[[frameworks]]
name = "payload"
runtime = "cpython-3.11"
requirements = ["payload-{label}==1.0"]
"""


def count_spec(version: str, layers: int) -> tuple[str, list[str]]:
    """A stack of `layers` layers and the applications' launch module names.

    Half of the layers above the runtime are frameworks (fw-0 on the runtime,
    fw-i on fw-((i-1)//2), so frameworks sit on frameworks), the rest
    applications, app-j on fw-(j mod frameworks). Layer k requires `small-k`.
    """
    above = layers - 1
    frameworks = (above + 1) // 2
    text = _RUNTIME.format(version=version)
    for i in range(frameworks):
        base = 'runtime = "cpython-3.11"' if i == 0 else f'frameworks = ["fw-{(i - 1) // 2}"]'
        text += f'\n[[frameworks]]\nname = "fw-{i}"\n{base}\nrequirements = ["small-{i}==1.0"]\n'
    modules = []
    for j in range(above - frameworks):
        k = frameworks + j
        modules.append(f"app_{j}.py")
        text += (f'\n[[applications]]\nname = "app-{j}"\nlaunch_module = "launch_modules/app_{j}.py"\n'
                 f'frameworks = ["fw-{j % frameworks}"]\nrequirements = ["small-{k}==1.0"]\n')  # fmt: skip
    return text, modules


def _write_stack(folder: Path, text: str, modules: Sequence[str] = ()) -> Path:
    launch = folder / "launch_modules"
    launch.mkdir(parents=True)
    for name in modules:
        (launch / name).write_text(f"print({name.removesuffix('.py')!r})\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


# --- Measuring ----------------------------------------------------------------------------


def run_measured(command: Sequence[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run a command (failing loudly); its wall time in seconds and peak resident memory in bytes.

    The peak comes from wait4's rusage (ru_maxrss, KiB on Linux): the largest of the
    process itself and any children it waited for.
    """
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise SystemExit(f"bench: {' '.join(map(str, command))} failed ({proc.returncode}) in {cwd}:\n" + "\n".join(tail))
    return elapsed, usage.ru_maxrss * 1024


def untar_all(archives: Sequence[Path], target: Path) -> float:
    start = time.perf_counter()
    target.mkdir(parents=True)
    for archive in archives:
        subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True)
    return time.perf_counter() - start


def tree_size(folder: Path) -> int:
    """Bytes in the regular files under `folder` (links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if not os.path.islink(os.path.join(root, name)):
                total += info.st_size
    return total


@dataclass
class Series:
    """The measurements of one command on one stack."""

    seconds: list[float] = field(default_factory=list)
    peak: list[int] = field(default_factory=list)

    def add(self, measured: tuple[float, int] | float) -> None:
        if isinstance(measured, tuple):
            self.seconds.append(measured[0])
            self.peak.append(measured[1])
        else:
            self.seconds.append(measured)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


class _Stack:
    """One stack folder, with the commands of our tool run in it."""

    def __init__(self, label: str, folder: Path, tool: list[str], options: list[str], logs: Path) -> None:
        self.label, self.folder, self.tool, self.options, self.logs = label, folder, tool, options, logs

    def run(self, name: str, *args: str, tag: str = "") -> tuple[float, int]:
        log = self.logs / f"{self.label}-{name}{tag}.log"
        extra = self.options if name in ("lock", "build") else []
        return run_measured([*self.tool, name, *extra, *args, "venvstacks.toml"], self.folder, log)

    def deploy(self, artifacts: Path, target: Path) -> tuple[float, int]:
        log = self.logs / f"{self.label}-deploy.log"
        return run_measured([*self.tool, "deploy", str(artifacts), "--target", str(target)], self.folder, log)


def _archives(output: Path) -> list[Path]:
    return sorted(output.glob("*.tar.*"))


def _remove(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


# --- The two benchmarks -------------------------------------------------------------------


@dataclass
class SizeResult:
    label: str
    installed: int = 0
    archives: dict[str, int] = field(default_factory=dict)
    """Archive size of the payload layer, by format."""
    series: dict[str, Series] = field(default_factory=dict)


@dataclass
class CountResult:
    layers: int
    series: dict[str, Series] = field(default_factory=dict)


def _size_bench(folder: Path, tool: list[str], options: list[str], version: str, runs: int,
                out: Callable[[str], None]) -> list[SizeResult]:  # fmt: skip
    logs = folder / "logs"
    stacks: list[tuple[_Stack, SizeResult]] = []
    for seed, (label, size) in enumerate(SIZES, start=1):
        wheels = folder / "wheels" / label
        wheels.mkdir(parents=True)
        start = time.perf_counter()
        wheel = make_wheel(wheels, f"payload_{label}", size, seed)
        made = time.perf_counter() - start
        work = folder / f"size-{label}"
        _write_stack(work, size_spec(version, label))
        stack = _Stack(f"size-{label}", work, tool, [*options, "--local-wheels", str(wheels)], logs)
        lock, _ = stack.run("lock", "--if-needed")
        build, _ = stack.run("build")
        result = SizeResult(label, installed=tree_size(work / "_build" / "framework-payload"))
        result.series = {key: Series() for key in ("publish-xz", "publish-gz", "deploy", "untar")}
        stacks.append((stack, result))
        out(f"  size {label}: wheel {wheel.stat().st_size / MB:.0f} MB written in {made:.1f} s; "
            f"lock {lock:.1f} s, build {build:.1f} s (once, untimed in the table)")  # fmt: skip
    for run in range(runs):
        for stack, result in stacks:
            xz, gz = stack.folder / f"_pub-xz-{run}", stack.folder / f"_pub-gz-{run}"
            deployed, untarred = stack.folder / f"_deploy-{run}", stack.folder / f"_untar-{run}"
            result.series["publish-xz"].add(stack.run("publish", "--force", "--format", "tar.xz", "--output-dir", str(xz), tag="-xz"))
            result.series["publish-gz"].add(stack.run("publish", "--force", "--format", "tar.gz", "--output-dir", str(gz), tag="-gz"))
            for fmt, output in (("tar.xz", xz), ("tar.gz", gz)):
                result.archives[fmt] = sum(p.stat().st_size for p in _archives(output) if p.name.startswith("framework-payload"))
            result.series["deploy"].add(stack.deploy(gz, deployed))
            _remove(deployed)
            result.series["untar"].add(untar_all(_archives(gz), untarred))
            _remove(untarred, xz, gz)
        out(f"  size: run {run + 1}/{runs} done")
    return [result for _, result in stacks]


def _count_bench(folder: Path, tool: list[str], options: list[str], version: str, runs: int,
                 out: Callable[[str], None]) -> list[CountResult]:  # fmt: skip
    logs = folder / "logs"
    wheels = folder / "wheels" / "small"
    wheels.mkdir(parents=True)
    for k in range(max(COUNTS)):
        make_wheel(wheels, f"small_{k}", 200_000, 100 + k, modules=5)
    stacks: list[tuple[_Stack, CountResult]] = []
    for layers in COUNTS:
        text, modules = count_spec(version, layers)
        work = folder / f"count-{layers}"
        _write_stack(work, text, modules)
        stack = _Stack(f"count-{layers}", work, tool, [*options, "--local-wheels", str(wheels)], logs)
        lock, _ = stack.run("lock", "--if-needed")
        build, _ = stack.run("build")
        result = CountResult(layers, {key: Series() for key in ("publish", "deploy", "untar", "lock", "build")})
        stacks.append((stack, result))
        out(f"  {layers} layers: first lock {lock:.1f} s, build {build:.1f} s (once, untimed in the table)")
    for run in range(runs):
        for stack, result in stacks:
            output, deployed, untarred = (stack.folder / f"_{name}-{run}" for name in ("pub", "deploy", "untar"))
            result.series["publish"].add(stack.run("publish", "--force", "--format", "tar.gz", "--output-dir", str(output)))
            result.series["deploy"].add(stack.deploy(output, deployed))
            _remove(deployed)
            result.series["untar"].add(untar_all(_archives(output), untarred))
            _remove(untarred, output)
            result.series["lock"].add(stack.run("lock", "--if-needed", tag="-noop"))
            result.series["build"].add(stack.run("build", tag="-noop"))
        out(f"  count: run {run + 1}/{runs} done")
    return [result for _, result in stacks]


def _print_sizes(results: list[SizeResult], out: Callable[[str], None]) -> bool:
    out("Layer size (runtime + one framework holding the payload; publish covers both layers):")
    header = (f"{'payload':8} {'installed MB':>12} {'xz MB':>7} {'gz MB':>7} {'publish xz s':>12} {'publish gz s':>12} "
              f"{'deploy gz s':>11} {'tar -xf s':>9} {'peak xz MB':>10} {'peak gz MB':>10}")  # fmt: skip
    out(header)
    out("-" * len(header))
    for r in results:
        s = r.series
        out(f"{r.label:8} {r.installed / MB:12.1f} {r.archives['tar.xz'] / MB:7.1f} {r.archives['tar.gz'] / MB:7.1f} "
            f"{s['publish-xz'].median:12.2f} {s['publish-gz'].median:12.2f} {s['deploy'].median:11.2f} "
            f"{s['untar'].median:9.2f} {max(s['publish-xz'].peak) / MB:10.1f} {max(s['publish-gz'].peak) / MB:10.1f}")  # fmt: skip
    out("(sizes: installed files of the payload layer and its archives; peak: largest ru_maxrss over the runs)")
    largest = results[-1]
    all_ok = True
    for fmt in ("xz", "gz"):
        peak = max(largest.series[f"publish-{fmt}"].peak)
        ok = peak < MEMORY_TARGET
        all_ok &= ok
        out(f"memory: publish tar.{fmt} of the {largest.label} layer peaks at {peak / MB:.1f} MB "
            f"(target < {MEMORY_TARGET / MB:.0f} MB): {'ok' if ok else 'MISSED'}")  # fmt: skip
    return all_ok


def _print_counts(results: list[CountResult], out: Callable[[str], None]) -> None:
    out("Layer count (small local wheels; lock and build are no-ops: nothing changed):")
    header = f"{'layers':>6} {'publish gz s':>12} {'deploy s':>9} {'tar -xf s':>9} {'lock --if-needed s':>18} {'build (no-op) s':>15}"
    out(header)
    out("-" * len(header))
    for r in results:
        s = r.series
        out(f"{r.layers:6} {s['publish'].median:12.2f} {s['deploy'].median:9.2f} {s['untar'].median:9.2f} "
            f"{s['lock'].median:18.2f} {s['build'].median:15.2f}")  # fmt: skip


def scaling_main(folder: Path, tool: list[str], archives: Path, version: str, runs: int,
                 out: Callable[[str], None] = print) -> int:  # fmt: skip
    """Run both benchmarks with `tool` (the command running our zipapp) in the scratch folder `folder`.

    Returns 1 if the memory target is missed. The caller removes `folder`.
    """
    started = time.perf_counter()
    (folder / "logs").mkdir()
    # A private uv cache: the shared one would keep a copy of every payload wheel.
    os.environ["UV_CACHE_DIR"] = str(folder / "uv-cache")
    options = ["--python-archive-dir", str(archives), "--no-index"]
    sizes = _size_bench(folder, tool, options, version, runs, out)
    counts = _count_bench(folder, tool, options, version, runs, out)
    out(f"(medians of {runs} runs, in seconds; {(time.perf_counter() - started) / 60:.1f} minutes in all)")
    ok = _print_sizes(sizes, out)
    _print_counts(counts, out)
    return 0 if ok else 1
