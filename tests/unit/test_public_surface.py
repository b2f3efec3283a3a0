"""The public surface is one list: every public name and every error a user can catch."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pgmlops
from pgmlops import errors

ROOT = Path(pgmlops.__file__)


def _type_checking_names() -> set[str]:
    tree = ast.parse(ROOT.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                alias.asname or alias.name
                for stmt in node.body
                if isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names
            }
    raise AssertionError("pgmlops/__init__.py has no TYPE_CHECKING block")


def test_every_public_name_resolves_from_the_package_root() -> None:
    for name in pgmlops.__all__:
        assert getattr(pgmlops, name) is not None, name


def test_every_error_users_can_catch_is_exported() -> None:
    raised = {
        name
        for name, value in inspect.getmembers(errors, inspect.isclass)
        if issubclass(value, errors.PgmlopsError) and value.__module__ == errors.__name__
    }
    missing = raised - set(pgmlops.__all__)
    assert not missing, f"errors not importable from pgmlops: {sorted(missing)}"


def test_type_checkers_see_exactly_the_public_names() -> None:
    assert _type_checking_names() == set(pgmlops.__all__) - {"__version__"}


def test_all_lists_exactly_the_export_table() -> None:
    assert set(pgmlops.__all__) == set(pgmlops._EXPORTS) | {"__version__"}


def test_each_module_function_is_the_client_method_of_its_name() -> None:
    from pgmlops.client import Client

    for name in ("train", "promote", "rollback", "deploy", "models", "versions", "load", "monitor"):
        function, method = getattr(pgmlops, name), getattr(Client, name)
        assert function.__wrapped__ is method, name
        assert function.__doc__ == method.__doc__, name
        wanted = list(inspect.signature(method).parameters)[1:]  # without self
        assert list(inspect.signature(function).parameters) == wanted, name
