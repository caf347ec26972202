"""The project's layout: who imports whom among the top-level modules.

Scripts (the trainers, the evaluator, the recorders) are leaves: nothing imports them, so that a
change to a script's options or its `main` never breaks another entry point. The modules form a
graph without cycles, imported by name only (no `importlib.import_module`, no `__import__`), so
this test sees every edge. Heavy dependencies are imported where they are used: a Jacobian
evaluation loads neither transformers nor ZeroMQ.
"""

from __future__ import annotations

import ast
import functools
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

SCRIPTS = {"ppo_residual_jacobian", "ppo_residual_groot", "eval_policy", "train_bc", "record_demos", "benchmark",
           "serve_groot", "groot_tools", "deploy"}
OPTIONAL_SCRIPTS = {"finetune_groot"}
"""Scripts that may not exist; any module named ppo_* is a script too."""


# ---------------------------------------------------------------------- helpers
def project_modules() -> dict[str, pathlib.Path]:
    """Top-level modules of the repository (tests/ excluded), by module name."""
    return {path.stem: path for path in sorted(ROOT.glob("*.py"))}


def script_names(modules) -> set[str]:
    return {name for name in modules if name in SCRIPTS | OPTIONAL_SCRIPTS or name.startswith("ppo_")}


@functools.lru_cache(maxsize=None)
def parse(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.AST) -> list[tuple[str, int]]:
    """(top-level module name, line) of every absolute import in `tree`, wherever it is: module
    level, inside functions, in `if __name__ == "__main__":` blocks, in try/except."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def import_graph(modules: dict[str, pathlib.Path]) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imported_modules(parse(path)):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None when it has none (depth-first search)."""
    state: dict[str, str] = {}  # "active" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "active"
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "active":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe_chain(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(
        f"{a}.py (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])
    ) + f" -> {cycle[-1]}.py"


def dynamic_imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(call, line) of every importlib.import_module / import_module / __import__ call."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("__import__", "import_module"):
            found.append((func.id, node.lineno))
        elif isinstance(func, ast.Attribute) and func.attr in ("__import__", "import_module"):
            found.append((ast.unparse(func), node.lineno))
    return found


# ---------------------------------------------------------------------- the helpers can fail
def test_imports_are_found_wherever_they_are():
    tree = ast.parse(
        "import os\n"
        "import alpha.sub as a\n"
        "def f():\n"
        "    from beta import x\n"
        "try:\n"
        "    import gamma\n"
        "except ImportError:\n"
        "    pass\n"
        "from . import delta\n"
        "if __name__ == '__main__':\n"
        "    import epsilon\n"
    )
    assert sorted(imported_modules(tree), key=lambda found: found[1]) == [
        ("os", 1), ("alpha", 2), ("beta", 4), ("gamma", 6), ("epsilon", 11)]  # not the relative import


def test_find_cycle_reports_a_readable_chain():
    graph = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 9}, "d": {"a": 1}}
    cycle = find_cycle(graph)
    assert cycle == ["a", "b", "c", "a"]
    assert describe_chain(cycle, graph) == "a.py (line 3) -> b.py (line 7) -> c.py (line 9) -> a.py"
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2, "b": 3}}) is None


def test_dynamic_imports_are_found():
    tree = ast.parse(
        "import importlib\n"
        "from importlib import import_module\n"
        "m = importlib.import_module('x')\n"
        "n = import_module('y')\n"
        "def f():\n"
        "    return __import__('z')\n"
    )
    assert sorted(dynamic_imports(tree), key=lambda c: c[1]) == [
        ("importlib.import_module", 3), ("import_module", 4), ("__import__", 6)]


# ---------------------------------------------------------------------- the project
def test_listed_scripts_exist():
    modules = project_modules()
    missing = sorted(SCRIPTS - set(modules))
    assert not missing, f"scripts listed in tests/test_layout.py but not in the repository: {missing}; update SCRIPTS"


def test_no_module_imports_a_script():
    modules = project_modules()
    scripts = script_names(modules)
    graph = import_graph(modules)
    offenders = [
        f"{name}.py line {line} imports the script {target}.py"
        for name, edges in sorted(graph.items())
        for target, line in sorted(edges.items())
        if target in scripts
    ]
    assert not offenders, (
        "scripts are leaves; move what is shared into a module:\n  " + "\n  ".join(offenders))


def test_import_graph_has_no_cycle():
    graph = import_graph(project_modules())
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {describe_chain(cycle, graph)}"


def test_no_dynamic_imports():
    offenders = [
        f"{name}.py line {line}: {call}(...)"
        for name, path in project_modules().items()
        for call, line in dynamic_imports(parse(path))
    ]
    assert not offenders, (
        "import project code by name, so the import graph is visible:\n  " + "\n  ".join(offenders))


def test_jacobian_trainer_steps_the_vector_env():
    tree = parse(ROOT / "ppo_residual_jacobian.py")
    calls = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "step"
        and ((isinstance(node.func.value, ast.Name) and node.func.value.id == "envs")
             or (isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "envs"))
    ]
    assert calls, "ppo_residual_jacobian.py never calls envs.step(...) / self.envs.step(...)"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_have_a_main_guard(name):
    path = ROOT / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{name}.py does not exist")
    guards = [
        node for node in parse(path).body
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test)
    ]
    assert guards, f"{name}.py is a script but has no `if __name__ == \"__main__\":` block"


# ---------------------------------------------------------------------- what an evaluation loads
EVALUATE_AND_LIST_HEAVY_MODULES = """
import sys

import tyro

import eval_policy

eval_policy.main(tyro.cli(eval_policy.Args, args=sys.argv[1:]))
print("heavy modules loaded:", sorted(name for name in ("transformers", "zmq") if name in sys.modules))
"""


def test_a_jacobian_evaluation_loads_neither_transformers_nor_zeromq(tmp_path):
    output = tmp_path / "eval.json"
    run = subprocess.run(
        [sys.executable, "-c", EVALUATE_AND_LIST_HEAVY_MODULES, "--base-policy", "jacobian", "--n-episodes", "1",
         "--output-json", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert output.is_file()  # the episode ran
    assert run.stdout.splitlines()[-1] == "heavy modules loaded: []", (
        "import the GR00T policy (transformers) and server (zmq) modules inside the code that needs them")


def test_the_floor_ci_installs_is_the_floor_requirements_declare():
    """.ci/run tests requirements-floor.txt's pins; they must be requirements.txt's lower bounds, so the
    declared floor is the tested one (torch is installed apart, as the README says)."""

    def versions(text: str, operator: str) -> dict[str, tuple[int, ...]]:
        found = {}
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            if operator in line:
                name, bound = line.split(operator)
                numbers = [int(part) for part in bound.split(",")[0].split(".")]
                while len(numbers) > 1 and numbers[-1] == 0:
                    numbers.pop()
                found[name.strip().lower().replace("_", "-")] = tuple(numbers)
        return found

    declared = versions((ROOT / "requirements.txt").read_text(encoding="utf-8"), ">=")
    pinned = versions((ROOT / "requirements-floor.txt").read_text(encoding="utf-8"), "==")
    declared.pop("torch")
    assert pinned == declared


def test_the_lerobot_requirements_are_requirements_txt_less_torch():
    """requirements-lerobot.txt, for a venv of its own, lists LeRobot and then requirements.txt's lines but torch
    (LeRobot 0.6 pins an older one), so the LeRobot venv runs the project as the main one does."""

    def requirements(name: str) -> list[str]:
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]

    lerobot, *others = requirements("requirements-lerobot.txt")
    assert lerobot.startswith("lerobot[")
    assert others == [line for line in requirements("requirements.txt") if not line.startswith("torch")]
