"""The reference pages of the documentation site cover the code they are rendered from."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaf_settings(cls: type, prefix: str, hooks: ModuleType) -> list[str]:
    keys = []
    for name, info in cls.model_fields.items():
        inner = hooks.nested_model(info.annotation)
        key = f"{prefix}{name}"
        keys += leaf_settings(inner, f"{key}.", hooks) if inner else [key]
    return keys


def test_the_configuration_reference_lists_every_setting_with_its_variable(hooks) -> None:
    from pgmlops.config import Settings

    page = hooks.settings_reference()
    keys = leaf_settings(Settings, "", hooks)
    assert len(keys) > 80
    for key in keys:
        env = "PGMLOPS_" + key.replace(".", "__").upper()
        assert f"| `{key}` | `{env}` |" in page, f"{key} is not in the reference"


def test_the_cli_reference_lists_every_command_and_exit_code(hooks) -> None:
    from pgmlops.cli import EXIT_CODES

    page = hooks.cli_reference()
    for command in ("train", "promote", "rollback", "models", "serve", "predict", "feedback"):
        assert f"## `pgmlops {command}`" in page
    for command in ("monitor", "retrain", "worker", "gc", "db upgrade", "artifacts sign"):
        assert f"## `pgmlops {command}`" in page
    for code in set(EXIT_CODES.values()) | {10}:
        assert f"| `{code}` |" in page
    assert "`--fail-on`" in page and "`--if-needed`" in page


def test_the_http_reference_lists_every_route_of_the_app(hooks) -> None:
    page = hooks.http_reference()
    spec = hooks.openapi_schema()
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"## `{method.upper()} {path}`" in page
    assert "## `POST /predict`" in page and "413" in page


def test_building_the_schema_leaves_the_environment_as_it_was(hooks, monkeypatch) -> None:
    monkeypatch.setenv("PGMLOPS_SERVING__MAX_BATCH", "not a number")
    hooks.openapi_schema()  # a bad variable of the shell does not reach the docs' app
    assert os.environ["PGMLOPS_SERVING__MAX_BATCH"] == "not a number"


def test_the_settings_example_comments_are_found_by_key(hooks) -> None:
    comments = hooks.example_comments()
    assert re.search("predict", comments["api_key"])
    assert "training.imbalance" in comments


def every_field(cls: type, prefix: str, hooks: ModuleType) -> list[tuple[str, object]]:
    fields = []
    for name, info in cls.model_fields.items():
        key = f"{prefix}{name}"
        fields.append((key, info))
        inner = hooks.nested_model(info.annotation)
        if inner is not None:
            fields += every_field(inner, f"{key}.", hooks)
    return fields


def test_every_setting_has_a_description_and_the_reference_shows_it(hooks) -> None:
    from pgmlops.config import Settings

    page = hooks.settings_reference()
    fields = every_field(Settings, "", hooks)
    undescribed = [key for key, info in fields if not (info.description or "").strip()]
    assert undescribed == [], f"settings without description=: {undescribed}"
    for key, info in fields:
        if hooks.nested_model(info.annotation) is None:
            row = next(line for line in page.splitlines() if line.startswith(f"| `{key}` |"))
            assert hooks.cell(info.description) in row, f"{key}'s description is not shown"
