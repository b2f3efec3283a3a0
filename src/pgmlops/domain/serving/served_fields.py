"""Request fields of columns training read specially: dates, booleans, normalised text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from pgmlops.domain.categories import FALSE_TEXT, TRUE_TEXT
from pgmlops.domain.dates import parse_date
from pgmlops.domain.schema import FeatureSpec

# The one answer to a boolean given for a number, wherever records arrive (the /predict route,
# Model.predict, batch scoring): pydantic's lax mode would read `true` as 1.0.
BOOLEAN_NOT_NUMBER = "Input should be a number, not a boolean"


def is_boolean(value: object) -> bool:
    """True, False or a NumPy boolean: never a number here, though Python counts True as 1."""
    return isinstance(value, bool | np.bool_)


def boolean_for_number(numeric: Sequence[str], rows: Sequence[object]) -> tuple[int, str] | None:
    """(position, feature) of the first record giving a boolean for a numeric feature, or None."""
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            for name in numeric:
                if is_boolean(row.get(name)):
                    return i, name
    return None


def no_nul(value: str) -> str:
    """PostgreSQL cannot store a NUL: a text value holding one is refused."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def special_field(spec: FeatureSpec, *, reject_unknown: bool) -> tuple[Any, Any] | None:
    """The field of a date, boolean or normalised text column, which maps values as training.

    A date arrives as text and is validated into days since 1970 (what the model reads and the
    log keeps); a boolean as JSON true/false (or yes/no text) into "True"/"False"; a text value
    into the spelling training kept ("north " -> "North"), or "other" for a pooled column.
    """
    if spec.date is not None:
        fmt = spec.date.format

        def days(value: Any) -> Any:
            return value if value is None else parse_date(value, fmt)

        # Text on the wire; days since 1970 once validated.
        kind: Any = Annotated[float, BeforeValidator(days), WithJsonSchema({"type": "string"})]
        also = "" if fmt == "ISO8601" else f", or as in training ({fmt})"
        return kind | None, Field(
            ...,
            description=f"a date: ISO 8601 (2024-03-01, 2024-03-01T12:00:00Z){also}",
            examples=[spec.date.reference],
        )
    if spec.boolean:
        as_text = AfterValidator(lambda b: TRUE_TEXT if b else FALSE_TEXT)
        return Annotated[bool, as_text] | None, Field(..., examples=[True])
    canonical = spec.canonical()
    if canonical is None:
        return None
    cats = [c for c in spec.categories or [] if c != "__missing__"]
    if reject_unknown and cats and not spec.pooled:
        kind = Annotated[Literal[tuple(cats)], BeforeValidator(canonical)]  # type: ignore[valid-type]
    else:
        kind = Annotated[str, BeforeValidator(canonical), AfterValidator(no_nul)]
    return kind | None, Field(..., examples=cats[:1] or None)
