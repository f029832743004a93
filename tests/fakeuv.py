"""A stand-in for the uv binary, for fast tests of what lock, build and publish decide.

`FakeUv` is a command runner (`venvstacks._proc.Runner`) for `venvstacks.uv.Uv`.
Given the argument lists `venvstacks/uv.py` builds, it does on disk what uv
would do there, from a small in-memory package index: `uv lock` writes a
`uv.lock` next to the project, `uv export` turns it into a `pylock.toml`,
`uv python install` unpacks a CPython (a script running this interpreter) and
`uv pip install` puts each locked distribution's `.dist-info` into the
environment. Every call is recorded, so a test can assert what was run as
well as what was decided, with no network and no real uv.

The rest are small helpers the decision tests share: a three-layer stack, and
lock and build runs wired to a `FakeUv`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shlex
import shutil
import sys
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from venvstacks._proc import CommandResult
from venvstacks.build.builder import BuildOutcome, BuildSettings, build_stack
from venvstacks.errors import CommandError
from venvstacks.lock.files import LockPaths, is_shared
from venvstacks.lock.locker import LockOutcome, LockSettings, lock_stack
from venvstacks.lock.state import check_stack_locks
from venvstacks.platforms import TargetPlatform
from venvstacks.spec.load import load_spec
from venvstacks.spec.model import LayerSpec, StackSpec
from venvstacks.standards.requirements import canonicalize_name
from venvstacks.standards.tomlwriter import dumps
from venvstacks.uv import Uv

__all__ = ["Call", "FakeUv", "Stack", "at", "edit", "write_stack", "STACK", "LAYERS", "RUNTIME", "FRAMEWORK", "APP", "PYTHON", "SHORT", "HOST"]

INDEX = "https://index.invalid/simple"
"""The index every fake package comes from."""
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
"""The runtime's Python version: this interpreter's, so that the fake runtime can really compile bytecode."""
SHORT = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST = TargetPlatform.LINUX_X86_64

RELEASES = {"idna": "3.10", "certifi": "2025.8.3", "python-dateutil": "2.9.0.post0", "six": "1.17.0", "packaging": "25.0"}
"""The newest release of each package on the fake index; a test bumps one to make a relock find something new."""
REQUIRES = {"python-dateutil": ("six",)}
"""What each fake package depends on."""

STACK = f"""\
[[runtimes]]
name = "cpython-{SHORT}"
python_implementation = "cpython@{PYTHON}"
requirements = ["packaging"]

[[frameworks]]
name = "web"
runtime = "cpython-{SHORT}"
requirements = ["idna", "certifi"]

[[applications]]
name = "dates"
launch_module = "dates.py"
frameworks = ["web"]
requirements = ["python-dateutil", "idna"]
versioned = true
"""
"""A runtime, a framework on it and a versioned application on the framework; the app shares `idna` with the framework."""
RUNTIME, FRAMEWORK, APP = f"cpython-{SHORT}", "framework-web", "app-dates"
LAYERS = [RUNTIME, FRAMEWORK, APP]


def at(hour: int) -> datetime.datetime:
    """A fixed moment (hours after midnight UTC on 2025-03-01), for a lock run's `now`."""
    return datetime.datetime(2025, 3, 1, hour, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Call:
    """One uv command the fake ran."""

    command: str
    """`lock`, `export`, `python install`, `pip install` or `pip uninstall`."""
    argv: tuple[str, ...]
    description: str
    env: Mapping[str, str] | None

    def option(self, flag: str) -> str:
        """The value after `flag` in the argument list."""
        return self.argv[self.argv.index(flag) + 1]


def _wheel(name: str, version: str) -> dict[str, object]:
    filename = f"{canonicalize_name(name).replace('-', '_')}-{version}-py3-none-any.whl"
    return {
        "name": filename,
        "url": f"https://files.invalid/{filename}",
        "hashes": {"sha256": hashlib.sha256(filename.encode()).hexdigest()},
    }


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class FakeUv:
    """A fake uv: a command runner that answers uv's argument lists from an in-memory index, recording each call."""

    def __init__(self) -> None:
        self.releases = dict(RELEASES)
        self.requires = dict(REQUIRES)
        self.calls: list[Call] = []
        self.found = 0
        """How many times the uv finder was asked for uv."""
        self.fail_on: str | None = None
        """A command whose description contains this fails, as uv would with no solution."""
        self._guard = threading.Lock()

    def find(self) -> Uv:
        """The uv finder to pass to `lock_stack` and `build_stack`."""
        with self._guard:
            self.found += 1
        return Uv(("uv",), "0.13.9", self)

    def clear(self) -> None:
        """Forget the calls so far."""
        with self._guard:
            self.calls.clear()
            self.found = 0

    def ran(self, command: str | None = None) -> list[str]:
        """The descriptions of the calls made (of one command only, when given), sorted."""
        return sorted(call.description for call in self.calls if command in (None, call.command))

    def __call__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        description: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> CommandResult:
        words = tuple(os.fspath(arg) for arg in argv)
        assert words[0] == "uv", words
        command = " ".join(words[1:3]) if words[1] in ("python", "pip") else words[1]
        call = Call(command, words, description, env)
        with self._guard:
            self.calls.append(call)
        if self.fail_on is not None and self.fail_on in description:
            raise CommandError(f"{description}: No solution found when resolving dependencies (fake uv)")
        handlers: dict[str, Callable[[Call], None]] = {
            "lock": self._lock,
            "export": self._export,
            "python install": self._python_install,
            "pip install": self._pip_install,
            "pip uninstall": self._pip_uninstall,
        }
        handlers[command](call)
        return CommandResult(words, 0, "", "")

    def _resolve(self, requirements: Sequence[str], constraints: Sequence[str]) -> dict[str, str]:
        pins = {}
        for line in constraints:
            requirement, _, marker = line.partition(";")
            name, _, version = requirement.partition("==")
            assert not marker.strip(), "the fake index has no conditional packages"
            pins[canonicalize_name(name)] = version.strip()
        resolved: dict[str, str] = {}
        todo = [canonicalize_name(match[0]) for text in requirements if (match := _NAME.match(text))]
        while todo:
            name = todo.pop()
            if name not in resolved:
                resolved[name] = pins.get(name) or self.releases[name]
                todo.extend(self.requires.get(name, ()))
        return dict(sorted(resolved.items()))

    def _lock(self, call: Call) -> None:
        project = Path(call.option("--project"))
        assert "--upgrade" in call.argv  # every lock resolves afresh
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        constraints = data["tool"]["uv"].get("constraint-dependencies", [])
        resolved = self._resolve(data["project"]["dependencies"], constraints)
        packages = [{"name": name, "version": version} for name, version in resolved.items()]
        lock = {"version": 1, "requires-python": data["project"]["requires-python"], "package": packages}
        (project / "uv.lock").write_text(dumps(lock), encoding="utf-8")

    def _export(self, call: Call) -> None:
        project = Path(call.option("--project"))
        assert "--locked" in call.argv
        lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
        packages = [{**package, "index": INDEX, "wheels": [_wheel(package["name"], package["version"])]} for package in lock["package"]]
        exported = {"lock-version": "1.0", "created-by": "uv", "requires-python": lock["requires-python"], "packages": packages}
        Path(call.option("--output-file")).write_text(dumps(exported), encoding="utf-8")

    def _python_install(self, call: Call) -> None:
        version = call.argv[3].removeprefix("cpython-")
        short = ".".join(version.split(".")[:2])
        root = Path(call.option("--install-dir")) / f"cpython-{version}-linux-x86_64-gnu"
        python = root / "bin" / "python3"
        if python.exists():
            return  # already installed: uv leaves it as it is
        (root / "lib" / f"python{short}" / "site-packages").mkdir(parents=True)
        (root / "bin").mkdir()
        python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
        python.chmod(0o755)

    @staticmethod
    def _site(call: Call) -> Path:
        environment = Path(call.option("--python")).parent.parent
        (site,) = environment.glob("lib/python3.*/site-packages")
        return site

    def _pip_install(self, call: Call) -> None:
        site = self._site(call)
        pylock = tomllib.loads(Path(call.option("-r")).read_text(encoding="utf-8"))
        for package in pylock["packages"]:
            if is_shared(package):
                continue
            module = canonicalize_name(package["name"]).replace("-", "_")
            (site / module).mkdir(exist_ok=True)
            (site / module / "__init__.py").write_text(f"__version__ = {package['version']!r}\n", encoding="utf-8")
            dist_info = site / f"{module}-{package['version']}.dist-info"
            dist_info.mkdir(exist_ok=True)
            (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package['name']}\nVersion: {package['version']}\n\n", encoding="utf-8")

    def _pip_uninstall(self, call: Call) -> None:
        site = self._site(call)
        packages = {canonicalize_name(word).replace("-", "_") for word in call.argv[call.argv.index("--no-config") + 1 :] if not word.startswith("-")}
        for dist_info in site.glob("*.dist-info"):
            if dist_info.name.partition("-")[0] in packages:
                shutil.rmtree(dist_info)


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first `old` in a file by `new` (which must be there)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def write_stack(folder: Path, text: str = STACK) -> Path:
    """Write a stack spec (and the app's launch module) into `folder`; the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dates.py").write_text("import dateutil\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


class Stack:
    """A stack in a temporary folder, locked and built with a fake uv."""

    def __init__(self, folder: Path, text: str = STACK) -> None:
        self.path = write_stack(folder, text)
        self.build_dir = folder / "_build"
        self.uv = FakeUv()

    @property
    def spec(self) -> StackSpec:
        """The spec as it is on disk now."""
        return load_spec(self.path, environ={})

    def layer(self, build_name: str) -> LayerSpec:
        return next(layer for layer in self.spec.layers() if layer.build_name == build_name)

    def lock_files(self) -> dict[str, bytes]:
        """Every file under `requirements/`, by path relative to it."""
        folder = self.path.parent / "requirements"
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    def pylock_path(self, build_name: str) -> Path:
        return LockPaths.for_layer(self.spec, self.layer(build_name)).pylock

    def lock(
        self,
        wants: Mapping[str, bool | None] | None = None,
        *,
        now: datetime.datetime | None = None,
        reset: frozenset[str] = frozenset(),
        exclude_newer: str | None = None,
    ) -> dict[str, LockOutcome]:
        """Lock (every layer if needed, unless `wants` says otherwise) at `now` (01:00); the outcomes by build name."""
        spec = self.spec
        moment = at(1) if now is None else now
        wants = {layer.build_name: None for layer in spec.layers()} if wants is None else wants
        settings = LockSettings(build_dir=self.build_dir, exclude_newer=exclude_newer)
        outcomes = lock_stack(spec, wants, settings, uv=self.uv.find, reset=reset, now=lambda: moment)
        return {outcome.build_name: outcome for outcome in outcomes}

    def build(self, names: Sequence[str] | None = None, *, clean: bool = False, jobs: int = 2) -> dict[str, BuildOutcome]:
        """Build the named layers (every layer when None); the outcomes by build name."""
        spec = self.spec
        layers = [layer for layer in spec.layers() if names is None or layer.build_name in names]
        settings = BuildSettings(build_dir=self.build_dir, host=HOST, clean=clean, jobs=jobs)
        outcomes = build_stack(spec, layers, settings, check_stack_locks(spec), uv=self.uv.find)
        return {outcome.build_name: outcome for outcome in outcomes}

    def built(self) -> Stack:
        """Lock and build every layer, then forget the uv calls that took."""
        self.lock()
        self.build()
        self.uv.clear()
        return self
