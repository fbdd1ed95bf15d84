"""The package's layout holds: a shared core under two towers, the pytest plugin and the `llm-energy` command.

Read from the sources with `ast` (nothing is imported): `core/` imports nothing of `plugin/` or `cli/`, the
towers import nothing of each other, the package's own `__init__` only the core, and no module imports one
that imports it back, even through others (imports inside functions count; those only for type checkers do
not, as they never run).
"""

import ast
from pathlib import Path

import pytest

import pytest_llm_energy

PACKAGE = Path(pytest_llm_energy.__file__).parent
NAME = "pytest_llm_energy"
# Which layers each layer may import; the root is the package's own __init__ (the public names).
ALLOWED = {
    "core": {"core"},
    "plugin": {"core", "plugin"},
    "cli": {"core", "cli"},
    "root": {"core"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(module: str, *, runtime_only: bool = False) -> set[str]:
    """The package's modules that `module` imports (a name imported from a package that is its submodule
    counts as that submodule)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if runtime_only and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(NAME):
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= submodules or ({target} & set(MODULES))
    return found - {module}


def test_the_layout_has_a_core_and_two_towers():
    assert {layer(module) for module in MODULES} == {"root", "core", "plugin", "cli"}
    assert f"{NAME}.plugin" in MODULES and f"{NAME}.cli" in MODULES  # the entry points' modules


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_layer_and_those_below(module):
    upward = sorted(target for target in imports(module) if layer(target) not in ALLOWED[layer(module)])
    assert not upward, f"{module} ({layer(module)}) imports {upward}"


def test_no_module_imports_one_that_imports_it_back():
    graph = {module: imports(module, runtime_only=True) for module in MODULES}
    cycles, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
