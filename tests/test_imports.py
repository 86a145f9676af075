"""hf_kd's modules import one another one way: no circle, function-level imports included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hf_kd

PACKAGE = Path(hf_kd.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the hf_kd modules it imports anywhere in its source (the package facade left out)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "hf_kd":
            continue
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            target = next((n for n in names if n in modules), None)  # `from pkg import submodule` too
            if target not in (None, "hf_kd", name):
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_hf_kd_imports_one_way():
    graph = import_graph()
    assert graph["hf_kd.trainers.base"] >= {"hf_kd.roles", "hf_kd.terms"}  # the graph is really read
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"
    assert graph["hf_kd.errors"] == set()
    assert "hf_kd.trainers" not in graph["hf_kd.arguments"]


def architecture_rooms() -> dict[str, int]:
    """Module -> its room's number, as docs/ARCHITECTURE.md lists them (`hf_kd/x/y.py` in a `### N.` section)."""
    text = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    rooms: dict[str, int] = {}
    for section in re.split(
        r"^### ", text.split("## The rooms", 1)[1].split("## Where a change goes", 1)[0], flags=re.M
    ):
        number = re.match(r"(\d+)\.", section)
        if number is None:
            continue
        for path in re.findall(r"`(hf_kd/[\w/]+\.py)`", section):
            name = module_name(PACKAGE.parent / path)
            assert name not in rooms, f"{path} is listed twice"
            rooms[name] = int(number.group(1))
    return rooms


def test_architecture_page_lists_every_module_and_imports_run_down_its_rooms():
    graph, rooms = import_graph(), architecture_rooms()
    assert set(rooms) == set(graph), f"unlisted: {set(graph) - set(rooms)}; listed but gone: {set(rooms) - set(graph)}"
    upward = [
        (source, target) for source, targets in graph.items() for target in targets if rooms[target] > rooms[source]
    ]
    assert not upward, f"imports from a later room: {upward}"
