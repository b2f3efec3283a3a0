"""Every error pgmlops raises on purpose, and the notes it gives when nothing is wrong.

Our exceptions::

    PgmlopsError
    ├── ConfigError            a setting, flag or config file is wrong
    ├── DataError              a dataset cannot be read or cannot train this model
    ├── TrainingError          the estimator could not be built or fitted
    ├── StoreError             the database is unreachable or in the wrong state
    │   └── SchemaOutdatedError  the database needs `pgmlops db upgrade`
    ├── ArtifactError          an artifact is missing, out of the root, or fails sha256/signature
    │   └── SigningKeyError      the signing key is missing, or not the one that signed
    ├── NotFoundError          a model, version, alias or prediction does not exist
    ├── PromotionRefused       the gates said no (carries the decision)
    ├── ConflictError          a concurrent change won, or a lock is held
    └── ValidationError        a request or record does not match the model's schema

Library errors are translated where they cross into our code
(``raise StoreError(...) from exc``); the CLI and the HTTP API map these classes to
exit codes and status codes in one table each (``cli.options.EXIT_CODES``, ``api.errors``).
Messages name Python parameters, never command-line flags; an error lists the parameters its
message names in ``params``, and the CLI shows each as its flag (``cli.options.cli_message``).
A warning that is no error (training's ``TrainResult.warnings``) is a ``Note``: the same
sentence in Python terms, carrying the parameters it names the same way.
"""

from __future__ import annotations

from typing import Any


class PgmlopsError(Exception):
    """Base class: the message is one line a user can act on."""

    def __init__(
        self, message: str, *, public: str | None = None, params: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        # What an anonymous HTTP client is told instead, when the message names locations.
        self.public = public
        # The Python parameters the message names: the CLI shows them as its flags.
        self.params = params

    def __str__(self) -> str:
        return self.message


class Note(str):
    """A warning in Python terms ("sniffed; sep= overrides") and the parameters it names.

    A ``str``, so a note is printed, compared and stored as the sentence; ``params`` lets the
    CLI show each named parameter as its flag, as it does for errors.
    """

    params: tuple[str, ...]

    def __new__(cls, message: str, *, params: tuple[str, ...] = ()) -> Note:
        note = super().__new__(cls, message)
        note.params = params
        return note


class ConfigError(PgmlopsError):
    """A setting, CLI flag or config file has a bad value."""


class DataError(PgmlopsError):
    """A dataset is missing, unreadable, or unfit for the requested training."""


class TrainingError(PgmlopsError):
    """The estimator could not be built or fitted."""


class StoreError(PgmlopsError):
    """The database is unreachable or refused an operation."""


class SchemaOutdatedError(StoreError):
    """The database schema is older than this version of pgmlops."""


class ArtifactError(PgmlopsError):
    """An artifact is missing, outside the artifact root, or fails its sha256 or signature."""


class SigningKeyError(ArtifactError):
    """The signing key is missing, or is not the key the registry's files were signed with."""


class NotFoundError(PgmlopsError):
    """A model, version, alias or prediction does not exist."""


class ConflictError(PgmlopsError):
    """A concurrent change won the race, or a lock is held by someone else."""


class ValidationError(PgmlopsError):
    """A record does not match the model's feature schema."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class PromotionRefused(PgmlopsError):
    """The promotion gates refused the candidate; ``decision`` holds every gate's numbers."""

    def __init__(self, message: str, decision: Any) -> None:
        super().__init__(message)
        self.decision = decision


class OutOfRangeWarning(UserWarning):
    """The Python API answered records with fields outside what training saw."""
