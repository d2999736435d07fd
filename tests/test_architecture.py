"""The layering of docs/architecture.md, checked on the import statements of the package.

- the library never imports the command-line application (``unitary_lowrank.cli``);
- the application uses the library only through public names: no private module
  (``_engines``, ``_validation``, ...) and no ``_name`` imported from the library;
- ``_agnostic`` (the array-agnostic arithmetic) imports only ``_array_api``;
- the helpers (``_array_api``, ``_validation``, ``_random``, ...), the tier below it, never
  import ``_agnostic``;
- randomness lives in ``_random``: no other module defines a generator helper or makes a
  NumPy generator;
- each tunable (threshold, block size, environment variable) is defined once, in
  ``_tunables``;
- no module imports a ``_private`` name of another public module;
- the package's imports form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unitary_lowrank"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import of the package in `path`."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [a.name for a in node.names]
            if module.startswith("unitary_lowrank"):
                # "from . import x" imports the submodule x
                found.append((module, names))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("unitary_lowrank")]
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_app(name: str) -> bool:
    return name in ("unitary_lowrank.cli", "unitary_lowrank.__main__") or name.startswith(
        "unitary_lowrank.cli.")


def _private(name: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in name.split(".")[1:])


def test_the_library_never_imports_the_application():
    offenders = [(m, imp) for m, p in MODULES.items() if not _is_app(m)
                 for imp, _ in _imports(p) if _is_app(imp)]
    assert not offenders


def test_the_application_uses_public_names_only():
    offenders = []
    for m, p in MODULES.items():
        if not _is_app(m):
            continue
        for imp, names in _imports(p):
            if _is_app(imp):
                continue
            if _private(imp) or any(n.startswith("_") for n in names):
                offenders.append((m, imp, names))
    assert not offenders


def test_agnostic_bodies_import_only_the_array_api_helpers():
    allowed = {"unitary_lowrank._array_api", "unitary_lowrank._agnostic"}
    offenders = [(m, imp) for m, p in MODULES.items() if m.startswith("unitary_lowrank._agnostic")
                 for imp, _ in _imports(p) if imp not in allowed]
    assert not offenders


#: The helpers: the private modules of the library below its tiers (docs/architecture.md).
HELPERS = ("_array_api", "_validation", "_random", "_parallel", "_pool", "_signals",
           "_tunables")


def test_helpers_never_import_the_agnostic_bodies():
    helpers = {f"unitary_lowrank.{h}" for h in HELPERS}
    assert helpers <= set(MODULES)
    offenders = [(m, imp) for m in helpers for imp, names in _imports(MODULES[m])
                 if imp.startswith("unitary_lowrank._agnostic")
                 or (imp == "unitary_lowrank" and "_agnostic" in names)]
    assert not offenders


def test_the_helpers_name_the_same_retractions_as_the_agnostic_cores():
    from unitary_lowrank import _validation
    from unitary_lowrank._agnostic import _updates

    assert _validation.METHODS == _updates.METHODS


#: What only ``_random`` defines: its helpers, and the calls that make a NumPy generator.
GENERATOR_HELPERS = {"as_generator", "rng_library", "check_rng_library", "resolve_dtype",
                     "haar_samples", "haar_jax", "haar_torch", "host_gaussian", "host_normal",
                     "jax_normal", "draws", "HostDraws", "JaxDraws", "TorchDraws"}


def _defined(tree: ast.AST) -> set[str]:
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.ClassDef)}


def _calls(tree: ast.AST, name: str) -> bool:
    return any(isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Attribute) and node.func.attr == name
        or isinstance(node.func, ast.Name) and node.func.id == name) for node in ast.walk(tree))


def test_only_the_random_module_defines_generator_helpers():
    random = MODULES["unitary_lowrank._random"]
    assert GENERATOR_HELPERS <= _defined(ast.parse(random.read_text(encoding="utf-8")))
    offenders = []
    for m, p in MODULES.items():
        if m == "unitary_lowrank._random":
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        offenders += [(m, name) for name in sorted(_defined(tree) & GENERATOR_HELPERS)]
        if not _is_app(m) and _calls(tree, "default_rng"):  # a seed made a generator here
            offenders.append((m, "default_rng"))
    assert not offenders


#: Names the tunables had where they were used, before ``_tunables`` gathered them.
OLD_TUNABLE_NAMES = {"_SMALL_MAX_ENTRIES", "_SMALL_MAX_RANK", "_SMALL_MAX_WORK", "_PARALLEL_MIN",
                     "_BLOCK_BYTES", "MIN_BYTES", "DEFAULT_MAX_IDLE_BYTES", "ENV_VAR", "_ENV",
                     "_EXACT_CHECK_MAX"}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def test_each_tunable_is_defined_once_in_the_tunables_module():
    from unitary_lowrank import _tunables

    tunables = {name for name in vars(_tunables) if name.isupper()}
    assert {"AUTO_MIN_ENTRIES", "SMALL_MAX_WORK", "PARALLEL_MIN", "BLOCK_BYTES", "COND_LIMIT",
            "NUM_THREADS_VAR", "RESULT_POOL_VAR", "DISABLE_NUMBA_VAR"} <= tunables
    offenders = []
    for m, p in MODULES.items():
        if m == "unitary_lowrank._tunables" or _is_app(m):
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in tree.body:  # a module-level assignment defines a value of its own
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            offenders += [(m, t.id) for t in targets if isinstance(t, ast.Name)
                          and t.id in tunables | OLD_TUNABLE_NAMES]
        docs = _docstrings(tree)  # an environment variable is named once, outside the prose
        offenders += [(m, node.value) for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and "UNITARY_LOWRANK_" in node.value and id(node) not in docs]
    assert not offenders


def test_no_private_name_crosses_a_public_module():
    """``from .sketch import _x`` couples two public modules through a private name."""
    offenders = []
    for m, p in MODULES.items():
        for imp, names in _imports(p):
            if imp == m or _private(imp) or _is_app(imp) != _is_app(m):
                continue
            offenders += [(m, imp, n) for n in names
                          if n.startswith("_") and f"{imp}.{n}" not in MODULES]
    assert not offenders


def test_imports_form_no_cycle():
    graph = {m: {imp for imp, names in _imports(p) for imp in
                 [imp, *(f"{imp}.{n}" for n in names)] if imp in MODULES and imp != m}
             for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules is not a cycle of concern
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if node.startswith(nxt + "."):  # a submodule importing its own package
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_registry_imports_nothing_from_the_package():
    # unitary_lowrank.methods names the retractions, samplers and directions for every layer
    # (helpers and adapters alike), so it may depend on none of them.
    assert not _imports(MODULES["unitary_lowrank.methods"])


def test_no_module_spells_out_the_list_of_retractions():
    offenders = []
    for m, p in MODULES.items():
        if m == "unitary_lowrank.methods":
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple) and {getattr(e, "value", None) for e in node.elts} == {
                    "polar", "exp", "cayley"}:
                offenders.append((m, node.lineno))
    # _agnostic keeps its own tuple (it imports only _array_api); it is checked equal below
    assert [o for o in offenders if o[0] != "unitary_lowrank._agnostic._updates"] == []
