"""The messages the source says through `tr`, `trn` and `N_`, found by reading it (ast), not by running it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "vlmswap"


def _literal(node: ast.AST) -> str | None:
    """A string literal, or implicitly concatenated ones ("a " "b")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def scan(root: Path = SRC) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]], list[str]]:
    """(msgid -> where, plural msgid -> (one, other), calls whose message is not a literal)."""
    singles: dict[str, list[str]] = defaultdict(list)
    plurals: dict[str, tuple[str, str]] = {}
    dynamic: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if "i18n" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            name, where = node.func.id, f"{path.relative_to(root)}:{node.lineno}"
            if name in ("tr", "N_") and node.args:
                text = _literal(node.args[0])
                if text is None:
                    dynamic.append(where)
                else:
                    singles[text].append(where)
            elif name == "trn" and len(node.args) >= 2:
                one, other = _literal(node.args[0]), _literal(node.args[1])
                if one is None or other is None:
                    dynamic.append(where)
                else:
                    plurals[one] = (one, other)
    return dict(singles), plurals, dynamic


if __name__ == "__main__":
    from vlmswap.i18n import ru

    singles, plurals, _ = scan()
    for msg in sorted(singles):
        if msg not in ru.MESSAGES:
            print(repr(msg))
    for one in sorted(plurals):
        if one not in ru.MESSAGES:
            print("PLURAL", repr(plurals[one]))
