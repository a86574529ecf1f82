"""The job's modules import one another without a circle, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "etl-processor" / "news_etl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, modules: set[str], here: str) -> set[str]:
    """The package's modules an import statement names: ``from a import b`` names ``a.b`` when that
    is a module, else ``a`` (``b`` is taken from it)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        package = here.split(".")[: len(here.split(".")) - node.level]
        base = ".".join([*package, *([base] if base else [])])
    names = {f"{base}.{alias.name}" for alias in node.names}
    return (names & modules) or ({base} & modules)


def import_graph() -> dict[str, set[str]]:
    """Each module of news_etl and the modules of news_etl it imports, wherever in the file."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        here = f"{name}.__init__" if path.name == "__init__.py" else name
        tree = ast.parse(path.read_text())
        statements = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
        graph[name] = set().union(*(imported(node, modules, here) for node in statements)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None (depth-first search)."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_finder_sees_a_circle_through_a_function_level_import():
    """The check can fail: a circle closed by a function-level import is found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = ast.parse("def f():\n    from news_etl.x import y\n")
    [node] = [node for node in ast.walk(source) if isinstance(node, ast.ImportFrom)]
    assert imported(node, {"news_etl.x", "news_etl.x.y"}, "news_etl.z") == {"news_etl.x.y"}


def test_no_module_of_news_etl_imports_itself_through_others():
    """No import circle among news_etl's modules, counting imports inside functions too."""
    graph = import_graph()
    assert "news_etl.hadoop_s3" in graph and "news_etl.kinesis.source" in graph
    assert find_cycle(graph) is None, find_cycle(graph)
