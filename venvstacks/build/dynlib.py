"""Sharing shared libraries that are not extension modules between layers (Linux and macOS).

Every `.so` or `.dylib` under a layer's site-packages that Python does not import
itself gets a relative symbolic link in the layer's `share/venv/dynlib` folder.
The python wrapper of each layer above puts those folders on the dynamic
loader's search path, so extension modules in one layer can load libraries
that were installed in another.

Exclusion patterns (`dynlib_exclude`) match the end of a library's full path:
`libpng16.*`, `PIL/**/libpng16.*`, `triton/**` or `*`.
"""

from __future__ import annotations

import glob
import importlib.machinery
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import BuildError

__all__ = [
    "DYNLIB_DIR",
    "exclusion_regex",
    "extension_suffixes",
    "find_shared_libraries",
    "link_dynlibs",
    "plan_dynlib_links",
]

_LOG = logging.getLogger(__name__)

DYNLIB_DIR = Path("share", "venv", "dynlib")
"""Where a layer's links to its shared libraries live, relative to the layer."""

_LIBRARY_SUFFIXES = frozenset({".so", ".dylib"})
_ABI3_SUFFIX = ".abi3.so"


def extension_suffixes(python_version: str) -> frozenset[str]:
    """The file suffixes of extension modules for the given `X.Y[.Z]` Python version.

    These are the running interpreter's `EXTENSION_SUFFIXES`, bar the bare `.so`,
    with its version tag (`cpython-311`) swapped for the layer's (`cpython-312`).
    """
    parts = python_version.split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts[:2]):
        raise ValueError(f"not a Python version: {python_version!r}")
    name = sys.implementation.name
    running = f".{name}-{sys.version_info.major}{sys.version_info.minor}"
    layer = f".{name}-{int(parts[0])}{int(parts[1])}"
    suffixes = {_ABI3_SUFFIX}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if suffix == ".so":
            continue
        if suffix.startswith(running):
            suffix = layer + suffix[len(running) :]
        suffixes.add(suffix)
    return frozenset(suffixes)


def _translate_class(content: str) -> str:
    """The regex for the inside of a `[...]` glob class (without the brackets)."""
    negated = content.startswith("!")
    if negated:
        content = content[1:]
    items: list[tuple[str, str | None]] = []  # (character, last of its range or None)
    dropped_leading = False
    index = 0
    while index < len(content):
        if index + 2 < len(content) and content[index + 1] == "-":
            first, last = content[index], content[index + 2]
            index += 3
            if first > last:  # a reversed range is empty, as in fnmatch
                dropped_leading = dropped_leading or not items
                continue
            items.append((first, last))
        else:
            items.append((content[index], None))
            index += 1
    if dropped_leading and not negated and items and items[0][0] == "!":
        # fnmatch reads a "!" that an empty leading range leaves at the front as a negation.
        negated = True
        _, end = items.pop(0)
        if end is not None:
            items[0:0] = [("-", None), (end, None)]
    if not items:
        return "." if negated else "(?!)"
    body = "".join(re.escape(start) + ("" if end is None else "-" + re.escape(end)) for start, end in items)
    return f"[{'^' if negated else ''}{body}]"


def _translate_segment(segment: str) -> str:
    """The regex for one path segment holding `*`, `?` and `[...]` wildcards."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        index += 1
        if char == "*":
            if not out or out[-1] != "[^/]*":
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = index + 1 if segment[index : index + 1] == "!" else index
            if segment[end : end + 1] == "]":
                end += 1
            end = segment.find("]", end)
            if end < 0:
                out.append(re.escape(char))
            else:
                out.append(_translate_class(segment[index:end]))
                index = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def _translate(pattern: str) -> str:
    """Our own `glob.translate(pattern, recursive=True, include_hidden=True, seps="/")`.

    Python 3.11 and 3.12 lack `glob.translate`; this gives the same matches.
    """
    segments = pattern.split("/")
    last = len(segments) - 1
    out: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "*":
            out.append("[^/]+/" if index < last else "[^/]+")
        elif segment == "**":
            if index == last:
                out.append(".*")
            elif segments[index + 1] != "**":
                out.append("(?:.+/)?")
        else:
            out.append(_translate_segment(segment))
            if index < last:
                out.append("/")
    return rf"(?s:{''.join(out)})\Z"


def _standard_translate(pattern: str) -> str:
    translate: Callable[..., str] | None = getattr(glob, "translate", None)
    if translate is None:
        return _translate(pattern)
    return translate(pattern, recursive=True, include_hidden=True, seps="/")


def exclusion_regex(pattern: str) -> re.Pattern[str]:
    """The regex to `search` a full path with, for a `dynlib_exclude` pattern.

    The pattern is prefixed with `/` and anchored at the end only, so it matches
    whole trailing path segments: `libpng16.*` excludes `.../PIL/libpng16.so`.
    """
    return re.compile(_standard_translate("/" + pattern))


def _is_library(path: Path, extensions: frozenset[str]) -> bool:
    if path.suffix not in _LIBRARY_SUFFIXES:
        return False
    return "".join(path.suffixes) not in extensions


def find_shared_libraries(site_packages: Path, *, exclude: Sequence[str], python_version: str) -> list[Path]:
    """The shared libraries under `site_packages` that are not extension modules, sorted.

    Versioned names such as `libfoo.so.1` are not matched. A library whose full
    path matches one of the `exclude` patterns is left out.
    """
    extensions = extension_suffixes(python_version)
    excluded = [(pattern, exclusion_regex(pattern)) for pattern in exclude]
    found: list[Path] = []
    for folder, dirs, files in os.walk(site_packages):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if not _is_library(path, extensions) or not path.is_file():
                continue
            match = next((pattern for pattern, regex in excluded if regex.search(str(path))), None)
            if match is not None:
                _LOG.debug("not linking %s (excluded by %r)", path, match)
                continue
            found.append(path)
    return sorted(found)


def _relative_name(path: Path, site_packages: Path) -> str:
    try:
        return path.relative_to(site_packages).as_posix()
    except ValueError:
        return str(path)


def _distinct(paths: Iterable[Path]) -> list[Path]:
    """`paths` less any that resolve to the same file as one before them."""
    seen: set[Path] = set()
    distinct: list[Path] = []
    for path in paths:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            distinct.append(path)
    return distinct


def plan_dynlib_links(layer_name: str, libraries: Sequence[Path], site_packages: Path) -> dict[str, Path]:
    """Map each link name (a library's file name) to its library, sorted by name.

    Raises BuildError naming every ambiguous name at once when libraries in
    different places share a file name; several paths to one file are fine.
    """
    candidates: dict[str, list[Path]] = {}
    for library in libraries:
        candidates.setdefault(library.name, []).append(library)
    plan: dict[str, Path] = {}
    clashes: list[str] = []
    for name in sorted(candidates):
        distinct = _distinct(candidates[name])
        if len(distinct) > 1:
            listed = ", ".join(_relative_name(path, site_packages) for path in distinct)
            clashes.append(f"  {name} => [{listed}]")
        else:
            plan[name] = distinct[0]
    if clashes:
        raise BuildError(
            f"Layer {layer_name}: ambiguous shared library names:\n"
            + "\n".join(clashes)
            + "\nSet dynlib_exclude in the layer definition to choose between them."
        )
    return plan


def link_dynlibs(layer_dir: Path, links: Mapping[str, Path]) -> None:
    """Make `share/venv/dynlib` in `layer_dir` hold exactly the given relative links.

    Every link already there is removed first; anything else in the folder
    raises BuildError and nothing is changed. The folder is created even when
    there is nothing to link.
    """
    folder = layer_dir / DYNLIB_DIR
    folder.mkdir(parents=True, exist_ok=True)
    entries = sorted(folder.iterdir())
    obstacles = [entry for entry in entries if not entry.is_symlink()]
    if obstacles:
        listed = "\n".join(f"  {entry}" for entry in obstacles)
        raise BuildError(f"{folder} holds entries that are not symbolic links:\n{listed}")
    for entry in entries:
        entry.unlink()
    base = os.path.abspath(folder)
    for name, library in sorted(links.items()):
        if not name or name != Path(name).name:
            raise BuildError(f"not a valid shared library link name: {name!r}")
        target = os.path.relpath(os.path.abspath(library), base)
        os.symlink(target, folder / name)
        _LOG.debug("linked %s -> %s", folder / name, target)
    _LOG.info("linked %d shared libraries in %s", len(links), folder)
