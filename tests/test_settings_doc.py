"""docs/settings.md lists every key of the schema, with its default, its environment variables and its checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from observability_app.conf import RENAMED, SCHEMA

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def _rows() -> list[list[str]]:
    text = DOC.read_text()
    start, end = text.index("<!-- settings-table:start -->"), text.index("<!-- settings-table:end -->")
    rows = [line for line in text[start:end].splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_every_key_has_one_row_in_schema_order():
    assert [row[0].strip("`") for row in _rows()] == [entry.name for entry in SCHEMA]


def test_each_row_says_the_default_the_variables_and_whether_start_up_checks_it():
    by_name = {entry.name: entry for entry in SCHEMA}
    for key, default, env, section, meaning in _rows():
        entry = by_name[key.strip("`")]
        assert re.findall(r"`([A-Z0-9_]+)`", env) == list(entry.env), key
        if default.startswith("`"):
            literal = default.strip("`")
            assert ast.literal_eval(literal) == entry.default, key
        else:  # a long list, summarised
            assert default == f"{len(entry.default)} entries (see below)", key
        assert section == entry.section, key
        assert ("Checked at start-up" in meaning) == entry.hot, key
        assert (f"(`{entry.check}`)" in meaning) == bool(entry.check), key


def test_renamed_keys_are_named_on_the_page_beside_their_new_name():
    text = DOC.read_text()
    for old, new in RENAMED.items():
        assert f"`{old}`" in text and f"`{new}`" in text
