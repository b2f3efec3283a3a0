"""What every command shares: option types, the error wrapper, the client, output helpers."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pgmlops import errors

if TYPE_CHECKING:
    from pgmlops.client import Client
    from pgmlops.services.context import Context

# One table maps every error class to an exit code; the most specific class wins.
EXIT_CODES: dict[type[errors.PgmlopsError], int] = {
    errors.ConfigError: 2,
    errors.DataError: 3,
    errors.ValidationError: 3,
    errors.TrainingError: 4,
    errors.StoreError: 5,
    errors.SchemaOutdatedError: 5,
    errors.ArtifactError: 6,
    errors.SigningKeyError: 6,
    errors.NotFoundError: 7,
    errors.ConflictError: 8,
    errors.PromotionRefused: 9,
}

# A Python parameter whose flag is not `--` and its name with dashes for underscores.
FLAGS: dict[str, str] = {"names": "--model-name", "params": "--param"}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Settings file (default ./pgmlops.yaml).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model-name", "-m", help="Registered model name (default from settings)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# Reading CSV files (train, predict): both are sniffed unless given.
SepOpt = Annotated[
    str | None, typer.Option("--sep", help="CSV delimiter, e.g. ';' or '\\t' (sniffed).")
]
EncodingOpt = Annotated[
    str | None, typer.Option("--encoding", help="CSV encoding, e.g. cp1252 (sniffed).")
]
DecimalOpt = Annotated[
    str | None, typer.Option("--decimal", help="CSV decimal mark, '.' or ',' (sniffed).")
]

F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: errors.PgmlopsError) -> int:
    """The exit code of an error: its most specific class in EXIT_CODES, else 1."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def error_code(exc: BaseException) -> str:
    """A stable machine-readable name of an error's kind: ConfigError -> 'config_error'."""
    if not isinstance(exc, errors.PgmlopsError):
        return "internal_error"
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def flag_of(param: str) -> str:
    """The flag that sets a Python parameter: model_name -> --model-name."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


_PLAIN = re.compile(r"[\w.-]+")


def cli_message(said: errors.PgmlopsError | str) -> str:
    """An error's or a note's message with each parameter it lists (`params`) as its flag.

    A parameter's first mention standing alone is the parameter; later ones are plain words
    ("encoding 'x' is not a known encoding"). A parameter written as Python sets it is the
    flag wherever it stands (`sep=` is --sep, `task='regression'` is --task regression), and
    then its bare mentions are words ("decimal commas (decimal= overrides)"). Quoted values,
    words inside a path or URL (/tmp/out/x.csv) and settings keys (serving.models) are left
    as they are.
    """
    message = said.message if isinstance(said, errors.PgmlopsError) else str(said)
    params: tuple[str, ...] = getattr(said, "params", ())
    if not params:
        return message
    names = "|".join(re.escape(p) for p in sorted(params, key=len, reverse=True))
    words = re.compile(
        rf"(?<!\w)'[^']*'(?!\w)|(?<!\w)\"[^\"]*\"(?!\w)"
        rf"|(?<![\w./\\-])({names})(=(?:'([^']*)'|\"([^\"]*)\")?)?(?![\w/\\-])"
    )
    # Once a message writes `name=`, that is how it names the parameter.
    named = {p for p in params if re.search(rf"(?<![\w./\\-]){re.escape(p)}=", message)}

    def shown(found: re.Match[str]) -> str:
        name, assigned = found[1], found[2]
        if name is None or (name in named and not assigned):
            return found[0]
        named.add(name)
        value = found[3] if found[3] is not None else found[4]
        if value is None:
            return flag_of(name)
        # A plain word needs no quotes on a command line; anything else keeps them.
        return f"{flag_of(name)} {value if _PLAIN.fullmatch(value) else repr(value)}"

    return words.sub(shown, message)


def json_error(message: str, code: str, status: int, **extra: Any) -> None:
    """An error as one JSON object on stdout, where --json output is read from."""
    typer.echo(json.dumps({"error": message, "code": code, "exit_code": status, **extra}))


def handled(fn: F) -> F:
    """Turn our errors into one line (JSON under --json) and a non-zero exit; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            if kwargs.get("model_name") is not None:
                from pgmlops.config import check_model_name

                check_model_name(kwargs["model_name"])
            return fn(*args, **kwargs)
        except errors.PromotionRefused as exc:
            if as_json:
                decision = getattr(exc.decision, "to_dict", None)
                json_error(
                    cli_message(exc),
                    error_code(exc),
                    exit_code(exc),
                    decision=decision() if decision else None,
                )
            else:
                print_refusal(exc)
            raise typer.Exit(exit_code(exc)) from None
        except errors.PgmlopsError as exc:
            if as_json:
                json_error(cli_message(exc), error_code(exc), exit_code(exc))
            else:
                typer.echo(f"error: {cli_message(exc)}", err=True)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            if as_json:
                json_error("interrupted", "interrupted", 130)
            else:
                typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except typer.Exit:
            # A command's own exit code (`monitor --fail-on`), not an internal error.
            raise
        except Exception as exc:
            if os.environ.get("PGMLOPS_DEBUG"):
                raise
            hint = "set PGMLOPS_DEBUG=1 for a traceback"
            message = f"internal error: {type(exc).__name__}: {exc}"
            if as_json:
                json_error(message, error_code(exc), 1, hint=hint)
            else:
                typer.echo(f"{message} ({hint})", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_refusal(exc: errors.PromotionRefused) -> None:
    """The refusal and every gate's verdict, on stderr."""
    decision = exc.decision
    typer.echo(f"refused: {cli_message(exc)}", err=True)
    for gate in getattr(decision, "gates", ()):
        mark = "PASS" if gate.passed else "FAIL"
        typer.echo(f"  [{mark}] {gate.name}: {gate.detail}", err=True)


def open_context(config: Path | None) -> Context:
    """Settings from --config (or the defaults) and the services' context built on them."""
    from pgmlops.config import load_settings
    from pgmlops.services.context import Context

    return Context(load_settings(config))


def open_client(config: Path | None) -> Client:
    """The public API's client on the settings of --config (or the defaults)."""
    from pgmlops.client import Client
    from pgmlops.config import load_settings

    return Client(settings=load_settings(config))


def actor() -> str:
    """Who is acting, for the audit trail."""
    from pgmlops.client import default_actor

    return default_actor("cli")


def print_json(data: Any) -> None:
    """Indented JSON on stdout; dates and other objects as text."""
    typer.echo(json.dumps(data, indent=2, default=str))
