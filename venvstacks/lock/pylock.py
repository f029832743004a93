"""Turning uv's universal `pylock.toml` export into a layer's lock.

uv resolves a layer for every platform at once. This module then keeps only
what the layer's target platforms need, marks the packages that lower layers
already provide (they stay in the lock, so the lock changes when what the
layer uses below changes, but can never be installed), removes anything that
could build from source, makes local wheel paths relative, and finds packages
without wheels for some target platform.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import RequirementError
from ..lock.files import SHARED_MARKER, is_shared, own_marker, tables, text_field, wheel_filename
from ..platforms import TargetPlatform, marker_environment
from ..standards.markers import Marker
from ..standards.requirements import canonicalize_name
from ..standards.tomlwriter import TomlTable, dumps
from ..standards.wheels import WheelGap, find_wheel_gaps

__all__ = ["LowerPin", "lower_pins", "constraint_lines", "LayerTarget", "edit_pylock", "render_pylock", "summary_text"]

_SOURCE_KEYS = ("archive", "directory", "sdist", "vcs")
_INLINE = frozenset({"packages.wheels", "packages.sdist", "packages.archive", "packages.vcs", "packages.directory"})


@dataclass(frozen=True)
class LowerPin:
    """A package a lower layer installs: its version, and where (its marker)."""

    name: str
    version: str
    marker: str | None


def lower_pins(pylocks: Iterable[TomlTable]) -> list[LowerPin]:
    """The packages lower layers install, from their pylocks (runtime first, then frameworks)."""
    pins: list[LowerPin] = []
    for pylock in pylocks:
        for package in tables(pylock.get("packages")):
            if not is_shared(package):
                pins.append(LowerPin(canonicalize_name(str(package["name"])), str(package["version"]), own_marker(package.get("marker"))))
    return pins


def constraint_lines(pins: Sequence[LowerPin]) -> list[str]:
    """uv constraints that hold an upper layer to the versions lower layers install.

    Per name, the first unconditional pin wins; conditional pins are kept (once
    per marker) until one is seen. Output is sorted by name, conditional pins first.
    """
    unconditional: dict[str, LowerPin] = {}
    conditional: dict[str, dict[str, LowerPin]] = {}
    for pin in pins:
        if pin.name in unconditional:
            continue
        if pin.marker is None:
            unconditional[pin.name] = pin
        else:
            conditional.setdefault(pin.name, {}).setdefault(pin.marker, pin)
    lines: list[str] = []
    for name in sorted(set(unconditional) | set(conditional)):
        if name not in unconditional:
            lines.extend(f"{p.name}=={p.version} ; {p.marker}" for p in conditional[name].values())
        else:
            lines.extend(f"{p.name}=={p.version} ; {p.marker}" for p in conditional.get(name, {}).values())
            lines.append(f"{name}=={unconditional[name].version}")
    return lines


@dataclass(frozen=True)
class LayerTarget:
    """What a layer's lock is for: its platforms and its runtime's interpreter."""

    platforms: tuple[TargetPlatform, ...]
    implementation: str
    python_version: str
    linux_glibc: tuple[int, int]
    macos: tuple[int, int]

    def matching(self, marker: str | None) -> tuple[TargetPlatform, ...]:
        """The target platforms where a marker holds (all of them for no marker)."""
        if marker is None:
            return self.platforms
        try:
            parsed = Marker.parse(marker)
        except RequirementError:
            return self.platforms
        found = []
        for platform in self.platforms:
            try:
                holds = parsed.evaluate(marker_environment(platform, self.implementation, self.python_version))
            except RequirementError:
                holds = True  # depends on something only the target machine knows
            if holds:
                found.append(platform)
        return tuple(found)


def _provided_below(target: LayerTarget, version: str, marker: str | None, pins: Sequence[LowerPin]) -> bool:
    if not pins:
        return False
    if any(pin.marker is None for pin in pins):
        return True
    if any(pin.version == version and pin.marker == marker for pin in pins):
        return True
    covered = {platform for pin in pins for platform in target.matching(pin.marker)}
    return set(target.matching(marker)) <= covered


def _relative_wheel_path(wheel: dict[str, object], pylock_dir: Path) -> None:
    location, url = text_field(wheel, "path"), text_field(wheel, "url")
    if location is None and url is not None and url.startswith("file:"):
        location = unquote(urlsplit(url).path)
    if location is None:
        return
    if os.path.isabs(location):
        location = os.path.relpath(location, pylock_dir)
    wheel["path"] = Path(location).as_posix()
    wheel.pop("url", None)


def edit_pylock(
    exported: TomlTable, target: LayerTarget, pins: Sequence[LowerPin], pylock_dir: Path
) -> tuple[dict[str, object], list[WheelGap]]:
    """Filter uv's export for one layer; returns the layer's pylock data and any wheel gaps."""
    by_name: dict[str, list[LowerPin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    data = {key: value for key, value in exported.items() if key != "packages"}
    packages: list[dict[str, object]] = []
    availability: list[tuple[str, list[str], tuple[TargetPlatform, ...]]] = []
    for original in tables(exported.get("packages")):
        package = {key: value for key, value in original.items() if key not in _SOURCE_KEYS}
        marker = text_field(package, "marker")
        applies = target.matching(marker)
        if not applies:
            continue
        if applies == target.platforms:
            package.pop("marker", None)
            marker = None
        if _provided_below(target, str(package["version"]), marker, by_name.get(canonicalize_name(str(package["name"])), [])):
            package["marker"] = f"({marker}) and {SHARED_MARKER}" if marker else SHARED_MARKER
            package.pop("index", None)
            package.pop("wheels", None)
        else:
            wheels = [dict(wheel) for wheel in tables(package.get("wheels"))]
            for wheel in wheels:
                _relative_wheel_path(wheel, pylock_dir)
            package["wheels"] = wheels
            availability.append((str(package["name"]), [wheel_filename(w) for w in wheels], applies))
        packages.append(_ordered(package))
    data["packages"] = packages
    gaps = find_wheel_gaps(availability, linux_glibc=target.linux_glibc, macos=target.macos)
    return data, gaps


def _ordered(package: dict[str, object]) -> dict[str, object]:
    # Keep uv's key order, with the marker (which may have been added) after the version.
    order = ["name", "version", "marker", "requires-python", "index"]
    result = {key: package[key] for key in order if key in package}
    result.update((key, value) for key, value in package.items() if key not in result)
    return result


def render_pylock(build_name: str, data: TomlTable) -> str:
    """The text of `pylock.<N>.toml`: a fixed header, then the TOML."""
    header = (
        f"# Locked requirements for {build_name} (DO NOT EDIT)\n"
        "#     Auto-generated by venvstacks with the following command:\n"
        "#         venvstacks lock\n"
    )
    return header + dumps(data, inline_arrays=_INLINE)


def summary_text(build_name: str, data: TomlTable) -> str:
    """The text of `packages-<build name>.txt`: what the layer installs, then what it shares."""
    own: list[str] = []
    shared: list[str] = []
    for package in tables(data.get("packages")):
        marker = own_marker(package.get("marker"))
        line = f"{package['name']}=={package['version']}" + (f" ; {marker}" if marker else "")
        (shared if is_shared(package) else own).append(line)
    lines = [f"# Package summary for {build_name}", "#     Auto-generated by venvstacks (DO NOT EDIT)", *own]
    if shared:
        lines.extend(["", "# Shared packages inherited from other layers", *sorted(shared)])
    return "\n".join(lines) + "\n"
