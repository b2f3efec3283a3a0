"""The signed copy of a version's card and recorded source (no I/O).

Retraining, serving and monitoring decide what code to import or call from a version's card
(training settings, feature function, estimator path, schema) and its recorded source. The
registry row holding them can be rewritten by anyone who can write the database, so the
same fields are also written, at registration, as one artifact signed like the model file;
readers take them from that verified copy and refuse a row that says something else.
"""

from __future__ import annotations

import json
from typing import Any

CARD_ROLE = "card"
_FORMAT = "pgmlops-card/1"


def card_document(card: dict[str, Any], source: dict[str, Any] | None) -> bytes:
    """Canonical bytes of a card (as JSON-mode data) and its recorded source."""
    body = {"format": _FORMAT, "card": card, "source": source}
    # Sorted keys and fixed separators: the same card always gives the same bytes and sha256.
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def read_card_document(data: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(card, source) from a card document; ValueError when it is not one."""
    body = json.loads(data.decode("utf-8"))
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise ValueError(f"not a {_FORMAT} document")
    card, source = body.get("card"), body.get("source")
    if not isinstance(card, dict) or not (source is None or isinstance(source, dict)):
        raise ValueError("its card or source is not a JSON object")
    return card, source


def first_difference(signed: Any, recorded: Any, path: str) -> str | None:
    """The dotted path of the first field where two JSON values differ, else None."""
    if isinstance(signed, dict) and isinstance(recorded, dict):
        for key in sorted(set(signed) | set(recorded), key=str):
            if key not in signed or key not in recorded:
                return f"{path}.{key}"
            found = first_difference(signed[key], recorded[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(signed, list) and isinstance(recorded, list):
        if len(signed) != len(recorded):
            return path
        for i, (a, b) in enumerate(zip(signed, recorded, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    # bool is an int to Python: True == 1 must still count as a change of type.
    if type(signed) is bool or type(recorded) is bool:
        return None if type(signed) is type(recorded) and signed == recorded else path
    return None if signed == recorded else path
