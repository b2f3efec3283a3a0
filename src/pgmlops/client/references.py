"""Model references ("churn", "churn@production", "churn/7") and who acts, for the audit trail."""

from __future__ import annotations

import os
import re

from pgmlops.config import check_model_name
from pgmlops.errors import ConfigError

# "churn", "churn@production", "churn/7": a model name, then an alias or a version number.
_REFERENCE = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]*)|/(?P<version>[^@/]*))?$")


def default_actor(via: str = "python") -> str:
    """Who acts, for the audit trail ($PGMLOPS_ACTOR wins): user@host and the interface."""
    if os.environ.get("PGMLOPS_ACTOR"):
        return os.environ["PGMLOPS_ACTOR"]
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} ({via})"


def parse_reference(reference: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) of "name", "name@alias" or "name/N"; one-line error otherwise."""
    usage = "use 'name', 'name@alias' or 'name/N'"
    match = _REFERENCE.match(reference) if isinstance(reference, str) else None
    if match is None:
        raise ConfigError(f"{reference!r} is not a model reference: {usage}")
    name = check_model_name(match["name"], "model reference")
    alias, number = match["alias"], match["version"]
    if alias is not None and not alias:
        raise ConfigError(f"{reference!r} names no alias after '@': {usage}")
    if number is not None:
        if not number.isdigit() or not 1 <= int(number) <= 2**31 - 1:
            raise ConfigError(
                f"{reference!r}: version {number!r} is not a positive whole number: {usage}"
            )
        return name, None, int(number)
    return name, alias, None
