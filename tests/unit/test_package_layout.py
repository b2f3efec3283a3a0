"""The package's shape: a cheap `import pgmlops`, a public API listed in one place, no circles."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pgmlops
import pgmlops.cli


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_pgmlops_loads_no_library() -> None:
    loaded = json.loads(_run("import json, sys, pgmlops; print(json.dumps(sorted(sys.modules)))"))
    heavy = {"pandas", "numpy", "sqlalchemy", "sklearn", "pydantic", "typer", "fastapi"}
    assert heavy.isdisjoint(loaded)
    assert [m for m in loaded if m.startswith("pgmlops.")] == []


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in pgmlops.__all__:
        value = getattr(pgmlops, name)
        assert value is not None
        if callable(value):
            assert (value.__doc__ or "").strip(), name
    assert set(dir(pgmlops)) == set(pgmlops.__all__)
    with pytest.raises(AttributeError):
        pgmlops.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    "module", [m.name for m in pkgutil.iter_modules(pgmlops.cli.__path__) if m.name != "__main__"]
)
def test_each_cli_module_imports_on_its_own(module: str) -> None:
    # A module that needs cli/__init__ to have run first (an import circle) fails here.
    _run(f"import pgmlops.cli.{module}")


def test_the_cli_uses_no_private_name_of_another_module() -> None:
    import ast
    from pathlib import Path

    root = Path(pgmlops.__file__).parent
    for path in [*root.joinpath("cli").glob("*.py"), *root.joinpath("api").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pgmlops"):
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                ]
                assert not private, f"{path.name} imports {private} from {node.module}"


# Issue 23 §5: a module over ~400 lines holds more than one thing; split it by content.
MAX_MODULE_LINES = 400


def _module_lines() -> dict[str, int]:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [*root.joinpath("src").rglob("*.py"), *root.joinpath("bench").rglob("*.py")]
    return {path.relative_to(root).as_posix(): path.read_text().count("\n") for path in files}


def test_no_module_in_src_or_bench_is_over_400_lines() -> None:
    lines = _module_lines()
    assert "src/pgmlops/client/__init__.py" in lines  # the walk did find the modules
    over = {path: n for path, n in lines.items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them by content): {over}"


# Issue 23 §2: inside each layer, a capability's modules live in one package named for it
# (docs/architecture.md, "Where each capability lives").
LAYERS = ("domain", "services", "store")


def _capability_packages(layer: str) -> list[str]:
    root = Path(pgmlops.__file__).parent / layer
    # migrations/ is Alembic's, not a capability.
    found = (p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    return sorted(name for name in found if name != "migrations")


def test_each_capability_package_says_what_it_holds() -> None:
    root = Path(pgmlops.__file__).parent
    for layer in LAYERS:
        for package in _capability_packages(layer):
            init = root / layer / package / "__init__.py"
            assert ast.get_docstring(ast.parse(init.read_text())), f"{layer}/{package}"


def test_a_module_named_for_a_capability_sits_in_its_package() -> None:
    # A `services/live_*.py` beside `services/live/` is the scattering the regroup ended.
    root = Path(pgmlops.__file__).parent
    for layer in LAYERS:
        packages = set(_capability_packages(layer))
        strays = [
            path.name
            for path in (root / layer).glob("*.py")
            if any(path.stem.startswith(f"{package}_") for package in packages)
        ]
        assert strays == [], f"{layer}/: {strays} belong in their capability's package"
