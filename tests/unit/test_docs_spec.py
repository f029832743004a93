"""docs/spec.md documents every field the spec loader accepts, and nothing it refuses.

The field tables of docs/spec.md (one per `## [[runtimes]]`-style section, first
column the field name in backticks, an `example` column holding a TOML value)
are read here. Each documented field, set to its example value in an otherwise
minimal spec, must load; misspelled, and in a layer kind whose table does not
list it, it must be refused. Every field the loader knows must be in the
tables, and every complete spec in a ```toml block of docs/*.md must load.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from support import ROOT
from venvstacks.spec import load as specload
from venvstacks.spec import uvconfig
from venvstacks.errors import SpecError
from venvstacks.spec.model import LayerKind
from venvstacks.spec.load import load_spec

DOCS = ROOT / "docs"
SPEC_DOC = DOCS / "spec.md"

LAYER_SECTIONS = {"[[runtimes]]": LayerKind.RUNTIME, "[[frameworks]]": LayerKind.FRAMEWORK, "[[applications]]": LayerKind.APPLICATION}
UV_SECTION = "[tool.uv]"
INDEX_SECTION = "[[tool.uv.index]]"
TOP_SECTION = "Top-level tables"

# A field that takes the place of another in the minimal spec (they may not be set together).
REPLACES = {"frameworks": "runtime", "fully_versioned_name": "python_implementation"}
DEPRECATED = {"build_requirements", "fully_versioned_name"}

# The minimal valid spec the field tests start from, as TOML text per field. The
# layer under test is the runtime, the framework `sklearn` or the application.
BASE_RUNTIME = {"name": '"cpython-3.12"', "python_implementation": '"cpython@3.12.7"', "requirements": "[]"}
BASE_OTHER_FRAMEWORK = {"name": '"scipy"', "runtime": '"cpython-3.12"', "requirements": "[]"}
BASE_FRAMEWORK = {"name": '"sklearn"', "runtime": '"cpython-3.12"', "requirements": "[]"}
BASE_APPLICATION = {
    "name": '"classifier"',
    "runtime": '"cpython-3.12"',
    "launch_module": '"launch_modules/classify.py"',
    "requirements": "[]",
}
BASE_INDEXES = [
    '{ name = "pytorch-cpu", url = "https://index.example/cpu", explicit = true }',
    '{ name = "pytorch-cu128", url = "https://index.example/cu128", explicit = true }',
]
BASE_INDEX_ENTRY = {"name": '"extra"', "url": '"https://index.example/simple"'}


# Reading the docs


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def field_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each `## ` section's field-table rows (header `field` first), as {column: cell}."""
    sections: dict[str, list[dict[str, str]]] = {}
    section = None
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            section, header = line[3:].strip(), None
            continue
        if section is None or not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            continue
        if header[0] != "field" or all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            continue
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        assert match, f"spec.md, section {section!r}: first cell {cells[0]!r} is not a field name in backticks"
        sections.setdefault(section, []).append({"field": match[1], **dict(zip(header[1:], cells[1:]))})
    return sections


TABLES = field_tables(SPEC_DOC.read_text(encoding="utf-8"))


def documented(section: str) -> list[str]:
    return [row["field"] for row in TABLES.get(section, [])]


def example(row: dict[str, str]) -> str:
    match = re.fullmatch(r"`(.+)`", row.get("example", ""))
    assert match, f"field {row['field']!r} has no example value in backticks"
    return match[1]


def rows(sections: list[str]) -> list[tuple[str, dict[str, str]]]:
    return [(section, row) for section in sections for row in TABLES.get(section, [])]


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.M | re.S)


# Writing specs


def _table(header: str, fields: dict[str, str]) -> str:
    return header + "\n" + "".join(f"{key} = {value}\n" for key, value in fields.items()) + "\n"


def render_spec(
    layers: dict[LayerKind, dict[str, str]] | None = None,
    uv: dict[str, str] | None = None,
    index_entry: dict[str, str] | None = None,
) -> str:
    """The minimal spec, with the given fields replacing the layer under test's (or the uv settings')."""
    layers = layers or {}
    runtime = layers.get(LayerKind.RUNTIME, BASE_RUNTIME)
    framework = layers.get(LayerKind.FRAMEWORK, BASE_FRAMEWORK)
    application = layers.get(LayerKind.APPLICATION, BASE_APPLICATION)
    indexes = list(BASE_INDEXES)
    if index_entry is not None:
        indexes.append("{ " + ", ".join(f"{key} = {value}" for key, value in index_entry.items()) + " }")
    uv_fields = {"index": "[" + ", ".join(indexes) + "]", **(uv or {})}
    return "".join(
        [
            _table("[[runtimes]]", runtime),
            _table("[[frameworks]]", BASE_OTHER_FRAMEWORK),
            _table("[[frameworks]]", framework),
            _table("[[applications]]", application),
            _table("[tool.uv]", uv_fields),
        ]
    )


def create_modules(data: dict[str, Any], folder: Path) -> None:
    """Create the launch and support modules and post-install hooks a parsed spec names (a folder unless it ends in .py)."""
    for layer in (*data.get("runtimes", []), *data.get("frameworks", []), *data.get("applications", [])):
        if isinstance(hook := layer.get("postinstall_hook"), str):
            (folder / hook).parent.mkdir(parents=True, exist_ok=True)
            (folder / hook).write_text("print('hooked')\n", encoding="utf-8")
    for app in data.get("applications", []):
        paths = [app.get("launch_module"), *app.get("support_modules", [])]
        for relative in paths:
            if not isinstance(relative, str):
                continue
            path = folder / relative
            if relative.endswith(".py"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("print('hello')\n", encoding="utf-8")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "__init__.py").write_text("", encoding="utf-8")
                (path / "__main__.py").write_text("print('hello')\n", encoding="utf-8")


def load_text(text: str, folder: Path) -> Any:
    path = folder / "venvstacks.toml"
    path.write_text(text, encoding="utf-8")
    create_modules(tomllib.loads(text), folder)
    return load_spec(path, environ={})


def layer_fields(kind: LayerKind, field: str, value: str) -> dict[LayerKind, dict[str, str]]:
    base = {LayerKind.RUNTIME: BASE_RUNTIME, LayerKind.FRAMEWORK: BASE_FRAMEWORK, LayerKind.APPLICATION: BASE_APPLICATION}[kind]
    fields = {key: text for key, text in base.items() if key != REPLACES.get(field)}
    fields[field] = value
    return {kind: fields}


def misspelled(field: str) -> str:
    return field[1] + field[0] + field[2:]


# (a) every documented field is accepted, with its example value


def test_the_tables_are_there() -> None:
    for section in [*LAYER_SECTIONS, UV_SECTION, INDEX_SECTION, TOP_SECTION]:
        assert documented(section), f"docs/spec.md has no field table in section '## {section}'"


def test_the_minimal_spec_loads(tmp_path: Path) -> None:
    spec = load_text(render_spec(), tmp_path)
    assert spec.warnings == ()
    assert [layer.build_name for layer in spec.layers()] == ["cpython-3.12", "framework-scipy", "framework-sklearn", "app-classifier"]


@pytest.mark.parametrize(("section", "row"), rows(list(LAYER_SECTIONS)), ids=lambda v: v if isinstance(v, str) else v["field"])
def test_documented_layer_field_is_accepted(section: str, row: dict[str, str], tmp_path: Path) -> None:
    kind, field = LAYER_SECTIONS[section], row["field"]
    spec = load_text(render_spec(layer_fields(kind, field, example(row))), tmp_path)
    if field in DEPRECATED:
        assert any(f"'{field}'" in warning for warning in spec.warnings), spec.warnings
    else:
        assert spec.warnings == ()


@pytest.mark.parametrize(("section", "row"), rows([UV_SECTION, INDEX_SECTION]), ids=lambda v: v if isinstance(v, str) else v["field"])
def test_documented_uv_field_is_accepted(section: str, row: dict[str, str], tmp_path: Path) -> None:
    field, value = row["field"], example(row)
    if section == UV_SECTION:
        spec = load_text(render_spec(uv={field: value}), tmp_path)
    else:
        spec = load_text(render_spec(index_entry={**BASE_INDEX_ENTRY, field: value}), tmp_path)
    assert spec.warnings == ()


@pytest.mark.parametrize("row", TABLES.get(UV_SECTION, []), ids=lambda row: row["field"])
def test_documented_uv_field_is_accepted_in_the_sibling_file(row: dict[str, str], tmp_path: Path) -> None:
    spec_text = render_spec().split("[tool.uv]")[0]
    indexes = "[" + ", ".join(BASE_INDEXES) + "]"
    settings = {"index": indexes, row["field"]: example(row)}
    (tmp_path / "venvstacks.uv.toml").write_text(_table("", settings).lstrip("\n"), encoding="utf-8")
    spec = load_text(spec_text, tmp_path)
    assert spec.uv_config.source == tmp_path / "venvstacks.uv.toml"
    assert spec.warnings == ()


REQUIRED_ROWS = [(section, row) for section, row in rows(list(LAYER_SECTIONS)) if row["required"] == "yes"]


def test_required_column() -> None:
    for section, row in rows(list(LAYER_SECTIONS)):
        assert row["required"] in ("yes", "no") or row["required"].startswith("either this or "), (section, row)
    for section in LAYER_SECTIONS:
        assert {"name", "requirements"} <= {row["field"] for s, row in REQUIRED_ROWS if s == section}


@pytest.mark.parametrize(("section", "row"), REQUIRED_ROWS, ids=lambda v: v if isinstance(v, str) else v["field"])
def test_required_fields_are_required(section: str, row: dict[str, str], tmp_path: Path) -> None:
    kind, field = LAYER_SECTIONS[section], row["field"]
    base = layer_fields(kind, field, "0")[kind]
    del base[field]
    with pytest.raises(SpecError, match=f"missing required field '{field}'"):
        load_text(render_spec({kind: base}), tmp_path)


@pytest.mark.parametrize(("section", "row"), rows(list(LAYER_SECTIONS)), ids=lambda v: v if isinstance(v, str) else v["field"])
def test_misspelled_layer_field_is_refused(section: str, row: dict[str, str], tmp_path: Path) -> None:
    kind, field = LAYER_SECTIONS[section], row["field"]
    wrong = misspelled(field)
    fields = layer_fields(kind, field, example(row))
    fields[kind][wrong] = fields[kind].pop(field)
    with pytest.raises(SpecError) as caught:
        load_text(render_spec(fields), tmp_path)
    assert any(issue.field == wrong and issue.message.startswith("unknown field") for issue in caught.value.issues), str(caught.value)


def test_misspelled_top_level_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="'aplications': unknown top-level key"):
        load_text(render_spec() + "[[aplications]]\nname = 'x'\n", tmp_path)


@pytest.mark.parametrize("kind", list(LayerKind), ids=str)
def test_fields_of_other_kinds_are_refused(kind: LayerKind, tmp_path: Path) -> None:
    section = next(name for name, value in LAYER_SECTIONS.items() if value is kind)
    own = set(documented(section))
    others = [(s, row) for s, row in rows(list(LAYER_SECTIONS)) if row["field"] not in own]
    assert others
    for _, row in others:
        fields = layer_fields(kind, row["field"], example(row))
        with pytest.raises(SpecError) as caught:
            load_text(render_spec(fields), tmp_path)
        assert any(issue.field == row["field"] for issue in caught.value.issues), str(caught.value)


# (b) every complete spec in the docs loads


def _doc_blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(DOCS.glob("*.md")):
        for number, block in enumerate(toml_blocks(path.read_text(encoding="utf-8")), 1):
            found.append((path.name, number, block))
    return found


DOC_BLOCKS = _doc_blocks()


def test_the_docs_have_complete_specs() -> None:
    assert sum("[[runtimes]]" in block for _, _, block in DOC_BLOCKS) >= 2


@pytest.mark.parametrize(("name", "number", "block"), DOC_BLOCKS, ids=[f"{n}-{i}" for n, i, _ in DOC_BLOCKS])
def test_doc_toml_block(name: str, number: int, block: str, tmp_path: Path) -> None:
    data = tomllib.loads(block)  # every block is valid TOML
    if "runtimes" in data:
        spec = load_text(block, tmp_path)
        assert spec.warnings == (), f"{name}, toml block {number}: {spec.warnings}"


_JSON_BLOCK = re.compile(r"^```json\n(.*?)^```", flags=re.M | re.S)
_DOCS_WITH_JSON = sorted(path.name for path in DOCS.glob("*.md") if _JSON_BLOCK.search(path.read_text(encoding="utf-8")))


def test_some_docs_have_json_blocks() -> None:
    assert _DOCS_WITH_JSON, "no JSON example in docs/: the check below would check nothing"


@pytest.mark.parametrize("name", _DOCS_WITH_JSON)
def test_doc_json_blocks_are_json(name: str) -> None:
    blocks = _JSON_BLOCK.findall((DOCS / name).read_text(encoding="utf-8"))
    assert blocks
    for block in blocks:
        assert isinstance(json.loads(block), (dict, list))


# (c) every field the loader knows is documented


def test_every_layer_field_the_loader_knows_is_documented() -> None:
    for section, kind in LAYER_SECTIONS.items():
        missing = sorted(set(specload._KEYS[kind]) - set(documented(section)))
        assert missing == [], f"docs/spec.md, '## {section}': not documented: {missing}"
        extra = sorted(set(documented(section)) - set(specload._KEYS[kind]))
        assert extra == [], f"docs/spec.md, '## {section}': documented but not known to the loader: {extra}"


def test_every_top_level_key_is_documented() -> None:
    assert sorted(documented(TOP_SECTION)) == sorted(specload._TOP_LEVEL_KEYS)


def _keys_read(module: Any) -> set[str]:
    """String keys a module reads from TOML tables (`x.get("k")`, `reader.string("k")`...)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    methods = {"get", "string", "boolean", "string_list", "string_table"}
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in methods
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def test_every_uv_setting_the_loader_checks_is_documented() -> None:
    keys = _keys_read(uvconfig)
    assert {"index", "sources", "exclude-newer", "url", "name", "explicit", "default"} <= keys
    missing = sorted(keys - set(documented(UV_SECTION)) - set(documented(INDEX_SECTION)))
    assert missing == [], f"docs/spec.md: uv settings checked by uvconfig.py but not documented: {missing}"


def test_every_field_the_layer_readers_read_is_known() -> None:
    # The readers of the layer fields must not read a key _KEYS does not list
    # (it would be refused as unknown, and missed by the test above).
    from venvstacks.spec import fields as specfields
    from venvstacks.spec import modules as specmodules
    from venvstacks.spec import references as specrefs

    known = set().union(*specload._KEYS.values())
    for module in (specload, specfields, specmodules, specrefs):
        read = {key for key in _keys_read(module) if not key.isupper()}  # not environment variables
        read -= {"tool", "uv", *specload._TOP_LEVEL_KEYS}
        assert read <= known, f"{module.__name__} reads {sorted(read - known)}"
