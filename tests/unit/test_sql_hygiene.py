"""All SQL is parameterised: no query text is built from values with f-strings, `%` or
`.format` (identifiers go through psycopg.sql.Identifier, values through bound parameters)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from infra.settings import PROJECT_ROOT

PACKAGES = (
    "schemas",
    "policy",
    "processors",
    "projections",
    "console",
    "cli",
    "demo",
    "infra",
    "bench",
    "tests",
)
# casegate writes SQL keywords in capitals, which keeps prose ("revoke it first") out.
SQL = re.compile(
    r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|COPY|CREATE|DROP|"
    r"ALTER|GRANT|REVOKE|TRUNCATE)\b"
)


def _text_parts(node: ast.AST) -> str:
    return " ".join(
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )


def string_built_sql(source: str) -> list[int]:
    """Lines where SQL-looking text is assembled from runtime values."""
    found = []
    for node in ast.walk(ast.parse(source)):
        built = (
            isinstance(node, ast.JoinedStr)
            or (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod | ast.Add)
                and (isinstance(node.left, ast.Constant | ast.JoinedStr))
            )
            or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
            )
        )
        if built and SQL.search(_text_parts(node)) and _has_runtime_part(node):
            found.append(node.lineno)
    return found


def _has_runtime_part(node: ast.AST) -> bool:
    """True when the text takes a value that is not itself a literal."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp):
        return not (isinstance(node.right, ast.Constant) and isinstance(node.left, ast.Constant))
    return True


def test_the_detector_catches_string_built_sql() -> None:
    assert string_built_sql('q = f"SELECT * FROM t WHERE id = {x}"') == [1]
    assert string_built_sql('q = "DELETE FROM t WHERE id = %s" % x') == [1]
    assert string_built_sql('q = "UPDATE t SET a = {}".format(x)') == [1]
    assert string_built_sql('q = "INSERT INTO t VALUES (" + x + ")"') == [1]
    assert string_built_sql('cur.execute("SELECT * FROM t WHERE id = %s", (x,))') == []
    assert string_built_sql('log.info(f"dead-lettering {x}")') == []


def test_no_module_builds_sql_from_strings() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if path.name == Path(__file__).name:
                continue
            for line in string_built_sql(path.read_text()):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{line}")
    assert offenders == [], "string-built SQL (use bound parameters / psycopg.sql):\n" + "\n".join(
        offenders
    )
