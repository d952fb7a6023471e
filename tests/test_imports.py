"""The package's import graph: no cycle, and kernels import nothing above them.

The graph is read from the source with :mod:`ast`, not from ``sys.modules``, so it holds every
import statement wherever it stands: at module level, inside functions (an import moved into a
function to dodge a cycle is still an edge), under ``if TYPE_CHECKING:`` and inside ``try``.
Only imports written in docstrings (the doctest examples) are not statements and do not count.
An edge ``a -> b`` means that an import statement of module ``a`` runs module ``b`` of this
package: relative imports are resolved; ``import p.x`` and ``from p.x import y`` run ``p`` and
``p.x``; ``from p import x`` runs ``p.x`` when that is a module (else ``x`` is a name defined in
``p``). A package that holds ``a`` has run before ``a`` does, so it is an edge only when ``a``
takes a name defined in it (``from .. import __version__``, ``import convtranspose as ct``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import convtranspose

PACKAGE = "convtranspose"
ROOT = Path(convtranspose.__file__).resolve().parent

#: Modules no kernel may import: the public entry points, the array path and the dispatcher
#: they call, and the tools on top (the ``tools`` package: the CLI, its checks,
#: ``precompile``, the ``bench*`` modules).
HIGH_LEVEL = ("api", "explain", "conv", "grad", "ops", "dispatch", "dask_ops", "layer",
              "tools", "__main__")
#: Packages holding the kernels.
KERNEL_PACKAGES = ("cpu", "cuda")


def is_high_level(name: str) -> bool:
    """Whether module ``name`` is one of :data:`HIGH_LEVEL` or a benchmark (``bench*``, at
    any depth: ``cuda/bench.py`` times the public function against cuDNN, so it is a tool
    on top of the kernels that happens to live beside them, not a kernel)."""
    last = name.rpartition(".")[2]
    return (name in {f"{PACKAGE}.{m}" for m in HIGH_LEVEL} or last.startswith("bench")
            or name.startswith(f"{PACKAGE}.tools."))


def module_name(path: Path, root: Path = ROOT, package: str = PACKAGE) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__.py`` names the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imports(name: str, tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The package's modules that the module ``name`` (parsed as ``tree``) imports."""
    found: set[str] = set()

    def add(target: str, *, whole: bool = True) -> None:
        # ``import a.b.c`` runs a, a.b and a.b.c: each is an edge, except a package that holds
        # the importing module (Python ran it before this module); the target itself, when the
        # statement takes names from it (``whole``), is an edge even then.
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in modules or prefix == name:
                continue
            if name.startswith(prefix + ".") and not (whole and prefix == target):
                continue
            found.add(prefix)

    here = name if _is_package(name, modules) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                if node.module:
                    base.append(node.module)
                base_name = ".".join(base)
            else:
                base_name = node.module or ""
            if base_name.split(".")[0] != name.split(".")[0]:
                continue
            subs = [f"{base_name}.{alias.name}" for alias in node.names]
            add(base_name, whole=not all(sub in modules for sub in subs))
            for sub in subs:
                if sub in modules:
                    add(sub)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: {modules of the package it imports}}`` for every module under ``root``."""
    modules = package_modules(root, package)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _imports(name, tree, modules)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none (depth-first)."""
    state: dict[str, int] = {}          # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of ``graph`` with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _short(name: str) -> str:
    """``convtranspose.cuda.arrays`` as ``cuda.arrays``; the package as itself."""
    return name if name == PACKAGE else name[len(PACKAGE) + 1:]


# --- the checker's own tests, on small packages written for them ---------------------------------

def _write(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_checker_resolves_relative_and_function_level_imports(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "from . import sub\nfrom .a import f\n",
        "a.py": "import os\nfrom .sub import x\n\ndef f():\n    from .sub.y import g\n",
        "sub/__init__.py": "",
        "sub/x.py": "from .. import a\n",            # a cycle: sub.x -> a -> sub.x
        "sub/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import f\n",
        "sub/z.py": "import pkg.sub.y\nfrom .. import VERSION\n",   # a name defined in pkg
    })
    graph = import_graph(root, "pkg")
    assert graph == {
        "pkg": {"pkg.sub", "pkg.a"},
        "pkg.a": {"pkg.sub", "pkg.sub.x", "pkg.sub.y"},
        "pkg.sub": set(),
        "pkg.sub.x": {"pkg.a"},
        "pkg.sub.y": {"pkg.a"},
        "pkg.sub.z": {"pkg", "pkg.sub.y"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.x", "pkg.a"]
    assert strongly_connected(graph) == [["pkg.a", "pkg.sub.x", "pkg.sub.y"]]


def test_checker_accepts_an_acyclic_package(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "from .top import run\n",
        "top.py": "import pkg.low\nfrom pkg import low as _low\n",
        "low.py": "import numpy\n",
    })
    graph = import_graph(root, "pkg")
    assert graph == {"pkg": {"pkg.top"}, "pkg.top": {"pkg.low"}, "pkg.low": set()}
    assert find_cycle(graph) is None
    assert strongly_connected(graph) == []


# --- the package itself --------------------------------------------------------------------------

def test_checker_sees_the_package():
    graph = import_graph()
    # a few edges that exist for certain: the checker reads this package, not nothing
    assert f"{PACKAGE}.api" in graph[PACKAGE]
    assert f"{PACKAGE}.params" in graph[f"{PACKAGE}.ops"]
    assert f"{PACKAGE}.cpu.engine" in graph[f"{PACKAGE}.cpu.deconv"]
    assert f"{PACKAGE}.cuda.kernels" in graph[f"{PACKAGE}.cuda.arrays"]
    assert len(graph) > 30
    assert is_high_level(f"{PACKAGE}.cuda.bench") and is_high_level(f"{PACKAGE}.dispatch")
    assert not is_high_level(f"{PACKAGE}.cuda.arrays") and not is_high_level(PACKAGE)


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        components = strongly_connected(graph)
        pytest.fail(
            "import cycle: " + " -> ".join(_short(m) for m in cycle)
            + "".join("\n  modules in one cycle: " + ", ".join(_short(m) for m in comp)
                      for comp in components))


@pytest.mark.parametrize("package", KERNEL_PACKAGES)
def test_kernels_import_nothing_above_them(package):
    graph = import_graph()
    prefix = f"{PACKAGE}.{package}"
    kernels = [m for m in graph if (m == prefix or m.startswith(prefix + "."))
               and not is_high_level(m)]
    assert len(kernels) >= 4
    bad = sorted(f"{_short(mod)} -> {_short(dep)}"
                 for mod in kernels for dep in graph[mod] if is_high_level(dep))
    assert not bad, "kernel modules import high-level modules:\n  " + "\n  ".join(bad)


def test_the_library_never_imports_its_tools():
    """The tools (``convtranspose.tools``: CLI, checks, benchmarks, precompile) sit on top:
    no module outside the package imports one of them (``__main__`` runs the CLI)."""
    tools = f"{PACKAGE}.tools"
    for name, imported in import_graph().items():
        if name == f"{PACKAGE}.__main__" or name == tools or name.startswith(tools + "."):
            continue
        assert not any(m == tools or m.startswith(tools + ".") for m in imported), name
