"""An error or a note names Python parameters; the CLI shows each one it lists as its flag."""

from __future__ import annotations

import pytest

from pgmlops.cli.options import cli_message, flag_of
from pgmlops.errors import ConfigError, DataError, Note


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


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("columns separated by ';' (sniffed; sep= overrides)", "(sniffed; --sep overrides)"),
        # Written as Python sets it, the parameter is the flag; its bare mentions are words.
        ("decimal commas (sniffed; decimal= overrides)", "decimal commas (sniffed; --decimal"),
        ("if they are counts, train with task='regression'", "train with --task regression"),
        # A value that is not one plain word keeps its quotes on the command line.
        ("try sep=';' instead", "try --sep ';' instead"),
        ("check decimal= and sep=, or clean the values", "check --decimal and --sep, or clean"),
    ],
)
def test_a_note_names_its_parameters_as_flags_on_the_command_line(message: str, shown: str) -> None:
    note = Note(message, params=("sep", "decimal", "task"))
    # In Python a note is the sentence itself.
    assert note == message and isinstance(note, str)
    assert shown in cli_message(note)
    # A plain string (a note from an older card) is shown as it is.
    assert cli_message(message) == message
