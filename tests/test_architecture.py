"""The package's shape: imports flow one way, between modules and between packages.

Every import inside `llmrec` counts, also one deferred into a function (it is still a
dependency) and one under `TYPE_CHECKING`, unless the module it names is a leaf of types
(a module that imports nothing from llmrec).
"""

from __future__ import annotations

import ast
from pathlib import Path

import llmrec

PACKAGE = Path(llmrec.__file__).parent


def module_files() -> dict[str, Path]:
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["llmrec", *path.relative_to(PACKAGE).with_suffix("").parts]
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in: `llmrec.a.b.Name` -> `llmrec.a.b`."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def import_graph() -> dict[str, set[str]]:
    """module -> the llmrec modules it imports (TYPE_CHECKING imports of type leaves left out)."""
    modules = module_files()
    found: dict[str, set[tuple[str, bool]]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = {id(n) for block in ast.walk(tree) if _type_checking(block) for n in ast.walk(block)}
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = _resolve(name, modules) if name.startswith("llmrec") else None
                if target and target != module:
                    targets.add((target, id(node) in guarded))
        found[module] = targets
    leaves = {m for m, targets in found.items() if not targets}
    return {m: {t for t, typing_only in targets if not (typing_only and t in leaves)} for m, targets in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def package_of(module: str) -> str:
    """`llmrec.rank.pipeline` -> `llmrec.rank`; top-level modules stand for themselves."""
    return ".".join(module.split(".")[:2])


def test_the_graph_sees_deferred_and_type_checking_imports():
    graph = import_graph()
    assert "llmrec.data.read" in graph["llmrec.data.dataset"]  # a plain import
    assert any(t.startswith("llmrec.generate") for t in graph["llmrec.cli.generate"])  # deferred into the verb


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_no_package_imports_itself_back():
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module)
        )
    assert cycles(packages) == []


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_command_line_entry_module_stays_thin():
    assert len((PACKAGE / "cli" / "main.py").read_text(encoding="utf-8").splitlines()) <= 200
