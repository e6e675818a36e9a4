"""The docs say what the code does: every setting in the README's table (with its default), every URL parameter
in SECURITY.md, every CLI option and JSON field in the docs, every indexed field in docs/indexing.md, and every
import of the package along the layers of docs/development.md. Plain files: fast."""

from __future__ import annotations

import argparse
import ast
import os
import re
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from clipsearch import cli
from clipsearch.cli import build_parser
from clipsearch.index.schema import FIELDS, Photo
from clipsearch.index.store import Hit
from clipsearch.links import OLD_NAMES, PARAMS
from clipsearch.search.results import Result
from clipsearch.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clipsearch"


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table under `heading`."""
    section = markdown.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows and not line.strip():
            break  # a blank line ends a Markdown table: rows after it would render as raw pipes
    return rows[1:]  # without the header


def test_every_setting_is_in_the_readme_table_by_its_variable_with_its_default() -> None:
    assert [each.name for each in SETTINGS] != [] and {each.name for each in SETTINGS} == {
        field.name for field in fields(Settings)
    }, "SETTINGS declares every setting"
    rows = table_rows((ROOT / "README.md").read_text(encoding="utf-8"), "## Settings")
    defaults = {name: row[1] for row in rows for name in re.findall(r"`([A-Z_]+)`", row[0])}
    assert {each.variable for each in SETTINGS} <= defaults.keys(), {
        each.variable for each in SETTINGS
    } - defaults.keys()
    wrong = {
        each.variable: (defaults[each.variable], each.default_text())
        for each in SETTINGS
        if not defaults[each.variable].startswith(each.default_text())
    }
    assert not wrong, f"the README's default (left) is not the code's (right): {wrong}"


def test_every_url_parameter_is_in_the_security_doc() -> None:
    rows = table_rows((ROOT / "docs" / "SECURITY.md").read_text(encoding="utf-8"), "## URL parameters")
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row[0])}
    assert set(PARAMS) | set(OLD_NAMES) <= documented, (set(PARAMS) | set(OLD_NAMES)) - documented


def layers() -> dict[str, int]:
    rows = table_rows((ROOT / "docs" / "development.md").read_text(encoding="utf-8"), "### Layers")
    return {module: int(row[0]) for row in rows for module in re.findall(r"`([\w.]+)`", row[1])}


SUBPACKAGES = ("model", "index", "ingest", "search")  # whose modules the layers name one by one (not app)


def module_name(parts: Sequence[str]) -> str:
    """A module of the package by its name in the layers: `library`, `index.store`; the page's modules are `app`."""
    if parts[0] in SUBPACKAGES and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def imported(path: Path) -> set[str]:
    """The clipsearch modules a file imports (at its top or inside a function), by their names in the layers."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clipsearch":
            parts = node.module.split(".")[1:]
            if not parts:
                found |= {alias.name for alias in node.names}
            elif parts[0] in SUBPACKAGES and len(parts) == 1:
                found |= {f"{parts[0]}.{alias.name}" for alias in node.names}
            else:
                found.add(module_name(parts))
        elif isinstance(node, ast.Import):
            found |= {module_name(a.name.split(".")[1:]) for a in node.names if a.name.startswith("clipsearch.")}
    return found


def test_no_module_imports_from_a_layer_below_it() -> None:
    layer = layers()
    modules = {path: module_name(path.relative_to(PACKAGE).with_suffix("").parts) for path in PACKAGE.rglob("*.py")}
    unplaced = {name for name in modules.values() if name not in layer and not name.endswith("__init__")}
    assert not unplaced, f"modules missing from the layers of docs/development.md: {unplaced}"
    wrong = [
        f"{path.relative_to(ROOT)} (layer {layer[name]}) imports {other} (layer {layer[other]})"
        for path, name in modules.items()
        if not name.endswith("__init__")
        for other in imported(path)
        if other != name and layer[other] > layer[name]
    ]
    assert not wrong, wrong


PAGE_MAY_IMPORT = {"library", "settings", "links", "display", "errors", "app"}


def test_the_page_only_parses_and_shows() -> None:
    """The page's modules reach the core through the Library (which gives them the values requests and results
    are made of): no rule of searching, serving or indexing can be written in the page."""
    page = [*(PACKAGE / "app").rglob("*.py"), ROOT / "streamlit_app.py"]
    beyond = {str(path.relative_to(ROOT)): sorted(imported(path) - PAGE_MAY_IMPORT) for path in page}
    assert not {path: modules for path, modules in beyond.items() if modules}


def test_nothing_outside_the_page_imports_streamlit() -> None:
    outside = [path for path in PACKAGE.rglob("*.py") if "app" not in path.relative_to(PACKAGE).parts[:1]]
    assert not [path for path in outside if re.search(r"^\s*(import|from) streamlit\b", path.read_text(), re.M)]


def test_every_cli_option_and_json_field_is_in_the_docs() -> None:
    """What `python -m clipsearch` takes and prints, against the README and docs (development.md names the options'
    old names)."""
    docs = "".join(
        (ROOT / name).read_text(encoding="utf-8")
        for name in ("README.md", "docs/searching.md", "docs/indexing.md", "docs/development.md")
    )
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    options = {
        (command, option)
        for command, parser in commands.choices.items()
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert options and not {
        (command, option) for command, option in options if f"`{option}" not in docs and f" {option}" not in docs
    }
    searching = (ROOT / "docs" / "searching.md").read_text(encoding="utf-8")
    strange = Hit("key", 0.5, Photo(path=os.fsdecode(b"caf\xe9.jpg"), name="caf.jpg", source="file"))
    fields = {*cli._json_result(Result(strange)), "understood"}
    assert "path_bytes" in fields and not {field for field in fields if f"`{field}`" not in searching}


def test_every_indexed_field_is_in_the_index_docs() -> None:
    section = (ROOT / "docs" / "indexing.md").read_text(encoding="utf-8").split("### The index", 1)[1]
    section = section.split("\n### ", 1)[0]
    kinds = {"vector": "vector", "numeric": "NUMERIC", "tag": "TAG", "text": "TEXT"}
    indexed = [spec for spec in FIELDS.values() if spec.indexed]
    missing = [spec.name for spec in indexed if f"`{spec.name}`" not in section or kinds[spec.indexed] not in section]
    assert indexed and not missing, missing
