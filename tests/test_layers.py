"""The package layout is layered: each layer imports only the layers below it (README, "Architecture").

Every module under src/experiments/ is parsed (not imported), and each of its imports of the project, at module
level or inside a function, is checked against LAYERS; the few imports that go up a layer are listed in ALLOWED,
each with why.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "experiments"

# Top to bottom: a layer may import itself and any layer after it in this list, never one before it.
LAYERS: tuple[str, ...] = (
    "__main__", "cli", "pipeline", "sweep", "stages", "training", "analysis", "tracking", "decoding", "model",
    "evaluation", "sql", "runs", "data", "fileio", "config",
)
# The package root (experiments/__init__.py) imports nothing and sits below everything.
MAX_TOP_LEVEL_MODULES = 8

# (importing module, imported module): why the import may go up a layer
ALLOWED: dict[tuple[str, str], str] = {
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """The project modules (or packages) `path` imports, with relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            # `from experiments.sql import sqlite_sandbox` imports a module, not a name
            found.update(f"{module}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / f"{module}.{alias.name}".replace(".", "/")).with_suffix(".py").is_file()
                         or (PACKAGE.parent / f"{module}.{alias.name}".replace(".", "/")).is_dir())
    return {m for m in found if m == "experiments" or m.startswith("experiments.")}


def layer_of(module: str) -> int | None:
    """Index in LAYERS (0 is the top); None for the package root."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return LAYERS.index(parts[1])


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    unknown = [module_name(p) for p in modules() if module_name(p) != "experiments"
               and module_name(p).split(".")[1] not in LAYERS]
    assert not unknown, f"modules in no layer (add their package to LAYERS): {unknown}"


def test_no_import_goes_up_a_layer() -> None:
    upward = []
    used = set()
    for path in modules():
        importer = module_name(path)
        below = layer_of(importer)
        for imported in sorted(project_imports(path)):
            above = layer_of(imported)
            if below is None or above is None or above >= below:
                continue
            if (importer, imported) in ALLOWED:
                used.add((importer, imported))
                continue
            upward.append(f"{importer} imports {imported} ({LAYERS[below]} is below {LAYERS[above]})")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)
    assert used == set(ALLOWED), f"ALLOWED lists imports that no longer exist: {set(ALLOWED) - used}"


def test_the_package_root_imports_nothing() -> None:
    assert not project_imports(PACKAGE / "__init__.py")


def test_top_level_stays_small() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules at the top of src/experiments/: {top}"


def test_the_checker_sees_upward_imports(tmp_path: Path) -> None:
    """The parser finds imports inside functions and relative ones, so the layering test can fail."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from experiments.pipeline import run_pipeline\n", encoding="utf-8")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"experiments.pipeline"}
    assert layer_of("experiments.pipeline") < layer_of("experiments.data.records")
    assert "experiments.sql.sqlite_sandbox" in project_imports(PACKAGE / "sql" / "executor.py")
