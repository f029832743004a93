"""Checking what uv installed into a layer against the layer's lock.

uv is trusted to install, not to tell the truth about it: after installing, the
distributions in the layer's own site-packages (their `.dist-info` folders) are
compared with what the lock selects for this machine. Every package whose
marker holds here must be present at its locked version, nothing a layer
underneath provides may be installed again, and nothing else may be there. A marker that cannot be decided
without the target machine (`platform_release`...) makes its package optional,
but still checks the version of one that is there.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError, RequirementError
from ..lock.files import is_shared, tables, text_field
from ..standards.markers import Marker
from ..standards.requirements import canonicalize_name
from ..standards.tomlwriter import TomlTable
from ..standards.versions import Version

__all__ = ["LockedSet", "locked_for", "installed_distributions", "install_problems", "check_installed"]

_SHOWN = 10
"""How many problems a BuildError lists before saying how many more there are."""


@dataclass(frozen=True)
class LockedSet:
    """What a layer's lock says belongs in its site-packages on one machine, by canonical name."""

    required: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Packages whose marker holds here: the versions the lock allows."""
    optional: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Packages whose marker cannot be decided here: allowed, at these versions."""
    provided_below: frozenset[str] = frozenset()
    """Packages only layers underneath provide."""


def _version(text: str) -> str:
    """A version in PEP 440 normal form (as written when it is not PEP 440)."""
    try:
        return str(Version.parse(text.strip()))
    except RequirementError:
        return text.strip()


def _holds(marker: str | None, environment: Mapping[str, str]) -> bool | None:
    """Whether a package's marker holds in `environment`; None when that cannot be known here."""
    if marker is None:
        return True
    try:
        return Marker.parse(marker).evaluate(environment)
    except RequirementError:
        return None


def locked_for(pylock: TomlTable, environment: Mapping[str, str]) -> LockedSet:
    """What a parsed pylock installs in a marker `environment`."""
    required: dict[str, set[str]] = {}
    optional: dict[str, set[str]] = {}
    own: set[str] = set()
    below: set[str] = set()
    for package in tables(pylock.get("packages")):
        name = canonicalize_name(str(package["name"]))
        if is_shared(package):
            below.add(name)
            continue
        own.add(name)
        holds = _holds(text_field(package, "marker"), environment)
        if holds is not False:
            versions = (required if holds else optional).setdefault(name, set())
            if package.get("version") is not None:
                versions.add(_version(str(package["version"])))
    return LockedSet(
        required={name: frozenset(versions) for name, versions in required.items()},
        optional={name: frozenset(versions) for name, versions in optional.items()},
        provided_below=frozenset(below - own),
    )


def _metadata_field(dist_info: Path, name: str) -> str | None:
    """One header of a `.dist-info` folder's METADATA file; None if it is missing or unreadable."""
    try:
        with (dist_info / "METADATA").open(encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if not line.strip():
                    break  # the headers end at the first blank line
                key, _, value = line.partition(":")
                if key.strip().lower() == name.lower():
                    return value.strip()
    except OSError:
        return None
    return None


def installed_distributions(site: Path) -> dict[str, str]:
    """The distributions in a site-packages folder: canonical name to version, from `.dist-info` folders."""
    found: dict[str, str] = {}
    for dist_info in sorted(site.glob("*.dist-info")) if site.is_dir() else []:
        stem_name, _, stem_version = dist_info.name.removesuffix(".dist-info").partition("-")
        name = _metadata_field(dist_info, "Name") or stem_name
        version = _metadata_field(dist_info, "Version") or stem_version
        found[canonicalize_name(name)] = _version(version)
    return found


def _either(versions: frozenset[str]) -> list[str]:
    """`1.0 or 2.0` (as one item), or nothing for no versions."""
    return [" or ".join(sorted(versions))] if versions else []


def install_problems(locked: LockedSet, installed: Mapping[str, str]) -> list[str]:
    """How a site-packages folder differs from its lock: one line per distribution, sorted by name."""
    problems: list[tuple[str, str]] = []
    for name, versions in sorted(locked.required.items()):
        if name not in installed:
            problems.append((name, " ".join([name, *_either(versions), "is missing"])))
    for name, version in sorted(installed.items()):
        allowed = locked.required.get(name, frozenset()) | locked.optional.get(name, frozenset())
        if allowed and version not in allowed:
            problems.append((name, f"{name} is {version}, but the lock has {' '.join(_either(allowed))}"))
        elif name in locked.provided_below:
            problems.append((name, f"{name} {version} is installed, but a layer underneath provides it"))
        elif name not in locked.required and name not in locked.optional:
            problems.append((name, f"{name} {version} is installed, but the lock does not have it"))
    return [text for _, text in sorted(problems)]


def check_installed(layer_name: str, pylock: Path, site: Path, environment: Mapping[str, str]) -> None:
    """Raise BuildError unless `site` holds what `pylock` installs in `environment`."""
    try:
        data = tomllib.loads(pylock.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"layer {layer_name!r}: cannot read its lock {pylock}: {exc}") from exc
    problems = install_problems(locked_for(data, environment), installed_distributions(site))
    if not problems:
        return
    shown = problems[:_SHOWN]
    if len(problems) > _SHOWN:
        shown.append(f"... and {len(problems) - _SHOWN} more")
    lines = [f"layer {layer_name!r} was not built: what uv installed does not match its lock:", *(f"  {line}" for line in shown)]
    raise BuildError("\n".join(lines))
