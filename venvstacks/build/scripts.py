"""Which console scripts a built layer offers, and their rows in the installed packages' RECORD files.

The build removes the scripts uv writes into `bin/` (they name the build
folder). Instead, a layer's config lists the `console_scripts` and
`gui_scripts` entry points of the packages in its own site-packages, and
`postinstall.py` writes a relocatable launcher for each on the target
(`render_launcher`). The launchers' text depends only on the entry point, so
their RECORD rows are written here, at build time, and RECORD stays true.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path

from ..errors import BuildError
from ..postinstall import render_launcher
from ..fsutil import replace_file

__all__ = ["ScriptSource", "find_entry_point_scripts", "select_scripts", "record_launchers"]

_LOG = logging.getLogger(__name__)
_GROUPS = ("console_scripts", "gui_scripts")
_RESERVED = ("python",)
"""Script names starting with these would replace the layer's interpreter links."""

ScriptSource = tuple[str, str]
"""A script's entry point (`module:function`) and the `.dist-info` folder that declares it."""


def _entry_points(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # names are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def find_entry_point_scripts(site_packages: Path) -> dict[str, ScriptSource]:
    """Every console and GUI script the distributions in `site_packages` declare, by name.

    Distributions are read in name order and the first to declare a name
    keeps it (console scripts before GUI scripts). Names that would replace
    the interpreter, or cannot name a file, and entry points that are not
    `module:function` are skipped, with a debug message.
    """
    found: dict[str, ScriptSource] = {}
    for path in sorted(site_packages.glob("*.dist-info/entry_points.txt")):
        try:
            parser = _entry_points(path)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise BuildError(f"cannot read the entry points of {path.parent.name}: {exc}") from exc
        for group in _GROUPS:
            if not parser.has_section(group):
                continue
            for name, value in parser.items(group):
                entry_point = value.split("[", 1)[0].replace(" ", "")
                usable = not name.lower().startswith(_RESERVED) and "/" not in name and not name.startswith(".")
                try:
                    render_launcher(name, entry_point, "python")
                except ValueError:
                    usable = False
                if not usable:
                    _LOG.debug("%s: skipped the script %r (%s)", path.parent.name, name, value)
                elif name not in found:
                    found[name] = (entry_point, path.parent.name)
    return found


def select_scripts(layer: str, found: Mapping[str, ScriptSource], selection: bool | tuple[str, ...]) -> dict[str, ScriptSource]:
    """The scripts a layer's `console_scripts` field asks for: all, none, or the named ones (BuildError for a name no package declares)."""
    if selection is True:
        return dict(sorted(found.items()))
    if selection is False:
        return {}
    if missing := [name for name in selection if name not in found]:
        offered = ", ".join(sorted(found)) or "none"
        raise BuildError(
            f"layer {layer!r}: console_scripts names {', '.join(map(repr, missing))}, which no package of the layer declares (they declare: {offered})"
        )
    return {name: found[name] for name in sorted(selection)}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def record_launchers(site_packages: Path, bin_from_site: str, scripts: Mapping[str, ScriptSource], python_name: str) -> None:
    """Add a RECORD row for each launcher to the RECORD of the distribution declaring it.

    `bin_from_site` is the layer's `bin/` relative to `site_packages` (`../../../bin`).
    """
    by_dist: dict[str, list[str]] = {}
    for name, (_entry_point, dist_info) in scripts.items():
        by_dist.setdefault(dist_info, []).append(name)
    for dist_info, names in sorted(by_dist.items()):
        record = site_packages / dist_info / "RECORD"
        with record.open(encoding="utf-8", newline="") as stream:
            rows = [row for row in csv.reader(stream) if row]
        paths = {f"{bin_from_site}/{name}" for name in names}
        rows = [row for row in rows if row[0] not in paths]
        for name in sorted(names):
            data = render_launcher(name, scripts[name][0], python_name).encode("utf-8")
            rows.append([f"{bin_from_site}/{name}", _record_hash(data), str(len(data))])
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        replace_file(record, buffer.getvalue().encode("utf-8"))
