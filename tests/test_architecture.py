"""The module graph: no import circle, no module importing its own package's __init__, and the engines'
loop is the only training loop."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fa_bench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every fa_bench module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fa_bench"):
            folder = PACKAGE.parent / node.module.replace(".", "/")
            submodules = {a.name for a in node.names if (folder / f"{a.name}.py").is_file()}
            found |= {f"{node.module}.{name}" for name in submodules}
            if len(submodules) < len(node.names):  # names defined in the module (or package __init__) itself
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fa_bench")}
    return found


GRAPH = {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.count(".") >= 2))
def test_no_submodule_imports_its_own_package_init(module):
    package = module.rsplit(".", 1)[0]
    assert package not in GRAPH[module], f"{module} imports its package {package} (its __init__)"


def test_the_readme_layout_names_every_module():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("### Seed batching")]
    missing = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py" and p.name not in layout]
    assert not missing, f"README's layout does not list {missing}"


def test_the_packaging_finds_every_subpackage():
    """setup.py discovers packages, so a new subpackage ships without anyone listing it."""
    import runpy
    from unittest import mock

    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(PACKAGE.parent / "setup.py"))
    packages = set(setup.call_args.kwargs["packages"])
    expected = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert expected <= packages, expected - packages
    assert "fa_bench.conf" in packages and "hydra_plugins.fa_bench_sweeper" in packages
