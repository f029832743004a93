"""The uv settings shared by all layers: `[tool.uv]` in the spec, or `venvstacks.uv.toml`.

Only what the tool itself relies on is checked here (named indexes, sources and
`exclude-newer`); every other setting is passed on to uv, which checks it.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from types import MappingProxyType

from ..spec.issues import IssueLog, TableReader, describe_type
from ..spec.model import PackageIndex, UvConfig
from ..standards.requirements import canonicalize_name
from ..standards.tomlwriter import TomlTable

__all__ = ["parse_uv_config", "freeze", "parse_exclude_newer"]


def freeze(value: object) -> object:
    """A deeply read-only copy of a TOML value (tables become mappings, arrays tuples)."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


def freeze_table(table: TomlTable) -> TomlTable:
    """A deeply read-only copy of a TOML table."""
    return MappingProxyType({key: freeze(item) for key, item in table.items()})


def parse_exclude_newer(text: str) -> datetime.datetime:
    """The lock time clamp from `exclude-newer`: an RFC 3339 timestamp or a date (UTC)."""
    stamp = datetime.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.astimezone(datetime.UTC)


def parse_uv_config(
    table: TomlTable, log: IssueLog, *, prefix: str, source: Path, label: str
) -> UvConfig | None:
    """Check and freeze one uv settings table; None if it has problems (all logged).

    `label` is how problems name the file the table came from.
    """
    reader = TableReader(table, log, None, prefix=prefix, path=label)
    errors_before = len(log)
    indexes = _parse_indexes(reader, table.get("index"))
    names = {index.name for index in indexes if index.name is not None}
    sources = _parse_sources(reader, table.get("sources"), names)
    exclude_newer = table.get("exclude-newer")
    if exclude_newer is not None:
        if not isinstance(exclude_newer, str):
            reader.error("exclude-newer", f"expected a quoted timestamp string, got {describe_type(exclude_newer)}")
        else:
            try:
                parse_exclude_newer(exclude_newer)
            except ValueError:
                reader.error(
                    "exclude-newer",
                    f"expected a timestamp such as '2025-08-27T00:00:00Z' or a date, not {exclude_newer!r}",
                )
    if len(log) > errors_before:
        return None
    settings = {key: value for key, value in table.items() if key not in ("index", "sources")}
    return UvConfig(
        source=source,
        settings=freeze_table(settings),
        indexes=tuple(indexes),
        sources=MappingProxyType(sources),
    )


def _parse_indexes(reader: TableReader, value: object) -> list[PackageIndex]:
    if value is None:
        return []
    if not isinstance(value, list):
        reader.error("index", f"expected an array of tables ([[index]] entries), got {describe_type(value)}")
        return []
    indexes: list[PackageIndex] = []
    seen: set[str] = set()
    for position, entry in enumerate(value):
        field = f"index[{position}]"
        if not isinstance(entry, dict):
            reader.error(field, f"expected a table, got {describe_type(entry)}")
            continue
        entry_reader = TableReader(entry, reader.log, None, prefix=f"{reader.prefix}{field}.", path=reader.path)
        url = entry_reader.string("url")
        if url is None and "url" not in entry:
            reader.error(field, "missing required field 'url'")
        name = entry_reader.string("name")
        explicit = entry_reader.boolean("explicit")
        default = entry_reader.boolean("default")
        if name is not None:
            if name in seen:
                reader.error(f"{field}.name", f"index name {name!r} is defined more than once")
            seen.add(name)
        if url is None or explicit is None or default is None:
            continue
        indexes.append(
            PackageIndex(name=name, url=url, explicit=explicit, default=default, settings=freeze_table(entry))
        )
    return indexes


def _parse_sources(reader: TableReader, value: object, index_names: set[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        reader.error("sources", f"expected a table, got {describe_type(value)}")
        return {}
    sources: dict[str, str] = {}
    for dist, entry in value.items():
        field = f"sources.{dist}"
        if not isinstance(entry, dict) or not isinstance(entry.get("index"), str):
            reader.error(field, "must be an index source such as { index = \"name\" }; other uv source kinds are not supported")
            continue
        index = entry["index"]
        if index not in index_names:
            reader.error(field, f"references an unknown package index {index!r}{_known(index_names)}")
            continue
        key = canonicalize_name(dist)
        if key in sources:
            reader.error(field, f"specifies more than one source for {key!r}")
            continue
        sources[key] = index
    return sources


def _known(names: set[str]) -> str:
    if not names:
        return " (no named [[tool.uv.index]] entries are defined)"
    return " (defined indexes: " + ", ".join(repr(n) for n in sorted(names)) + ")"
