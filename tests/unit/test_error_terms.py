"""An error names Python parameters; the CLI shows each parameter it lists as its flag."""

from __future__ import annotations

import pytest

from pgmlops.cli.options import cli_message, flag_of
from pgmlops.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("param", "flag"),
    [("keep", "--keep"), ("model_name", "--model-name"), ("names", "--model-name")],
)
def test_a_parameter_is_shown_as_the_flag_that_sets_it(param: str, flag: str) -> None:
    assert flag_of(param) == flag


def test_only_the_parameters_an_error_lists_become_flags() -> None:
    exc = ConfigError("data 'x' looks like a URL: give query to read from a database")
    assert cli_message(exc) == exc.message
    exc.params = ("data", "query")
    assert cli_message(exc) == "--data 'x' looks like a URL: give --query to read from a database"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        # A quoted value keeps its words, even one that is a parameter's name.
        (
            "data 'postgresql://u@h/data' looks like a URL: give query",
            "--data 'postgresql://u@h/data' looks like a URL: give --query",
        ),
        ('data "it\'s data" is odd', '--data "it\'s data" is odd'),
        # So does an unquoted path, and a settings key.
        ("out /tmp/out/x.csv is a directory", "--out /tmp/out/x.csv is a directory"),
        ("names / serving.names: no production", "--model-name / serving.names: no production"),
        # The first mention is the parameter; later ones are words.
        ("data 'x' is not data", "--data 'x' is not data"),
        # A word that merely contains the name is not it.
        ("keep is 0 or more (keeping, keep_all)", "--keep is 0 or more (keeping, keep_all)"),
    ],
)
def test_values_paths_and_settings_keys_are_left_as_they_are(message: str, shown: str) -> None:
    exc = DataError(message, params=("data", "query", "out", "names", "keep"))
    assert cli_message(exc) == shown
