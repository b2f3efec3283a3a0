"""Feature schema: what columns a model takes, of which type, in which range, inferred once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, model_validator

from pgmlops.domain import categories as cat
from pgmlops.domain.kinds import DateSpec, Kind, Task
from pgmlops.errors import DataError

# pandas is imported by the functions that call it: every model card holds a FeatureSchema, and
# reading cards (registry commands) should not load pandas.
if TYPE_CHECKING:
    import pandas as pd

MISSING_CATEGORY = "__missing__"
# The largest finite float32: serving may compute in float32, so inputs must fit it.
# float(numpy.finfo(numpy.float32).max), written out so that reading a schema needs no numpy.
FLOAT32_MAX = 3.4028234663852886e38


class FeatureSpec(BaseModel):
    """One input column as the model saw it at training time."""

    name: str
    kind: Kind
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    missing_rate: float = 0.0
    # Text: values were stripped and case-folded to one spelling each (serving does the same).
    folded: bool = False
    # Text: a yes/no column, served as a JSON boolean and modelled as "True"/"False".
    boolean: bool = False
    # Text: rare values were pooled as "other"; any value not kept is "other" when served.
    pooled: bool = False
    # Numeric: a date column, served as text and carried as days since 1970-01-01 UTC.
    date: DateSpec | None = None

    def canonical(self) -> Callable[[Any], Any] | None:
        """The mapping from an incoming text value to training's spelling, if there is one."""
        if self.kind != "categorical" or not (self.folded or self.boolean or self.pooled):
            return None
        return cat.canonicaliser(
            self.categories or [], folded=self.folded, boolean=self.boolean, pooled=self.pooled
        )


@dataclass(frozen=True)
class ReadOptions:
    """How training reads messy columns (from the training settings)."""

    normalize_categories: bool = True
    max_categories: int = 50
    max_classes: int = 50
    dates: Literal["features", "drop"] = "features"
    dayfirst: bool = True


# Why training left a column out, for machines (`dropped` says it in words).
DropKind = Literal["requested", "empty", "constant", "identifier", "high_cardinality", "date"]
_KIND_OF_REASON: tuple[tuple[str, DropKind], ...] = (
    ("dropped by request", "requested"),
    ("all values are empty", "empty"),
    ("constant", "constant"),
    ("identifier", "identifier"),
    ("high-cardinality", "high_cardinality"),
    ("date", "date"),
)


def _kind_of_reason(reason: str) -> DropKind:
    for prefix, kind in _KIND_OF_REASON:
        if reason.startswith(prefix):
            return kind
    return "requested"


class FeatureSchema(BaseModel):
    """The whole input contract of a model version."""

    task: Task
    target: str
    features: list[FeatureSpec]
    classes: list[str] | None = None
    dropped: dict[str, str] = Field(default_factory=dict)
    # Same keys and order as `dropped` (the dataset's column order).
    dropped_kinds: dict[str, DropKind] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kinds_for_every_dropped_column(self) -> FeatureSchema:
        # Cards written before the kinds were recorded hold only the reasons, in words that
        # this module wrote; read the kind back from them.
        if set(self.dropped_kinds) != set(self.dropped):
            self.dropped_kinds = {
                name: self.dropped_kinds.get(name) or _kind_of_reason(why)
                for name, why in self.dropped.items()
            }
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def identifiers(self) -> list[str]:
        """Columns left out as identifiers, in the dataset's order."""
        return [name for name, kind in self.dropped_kinds.items() if kind == "identifier"]

    def keeping_left_out(self, earlier: FeatureSchema) -> FeatureSchema:
        """This schema plus the columns `earlier` left out that this data lacks, those first.

        A retrain's frame holds only the features: the base's identifier must stay known.
        """
        present = {*self.names, *self.dropped, self.target}
        carried = [name for name in earlier.dropped if name not in present]
        return self.model_copy(
            update={
                "dropped": {**{n: earlier.dropped[n] for n in carried}, **self.dropped},
                "dropped_kinds": {
                    **{n: earlier.dropped_kinds[n] for n in carried},
                    **self.dropped_kinds,
                },
            }
        )

    def key_column(self, configured: str | None = None) -> str | None:
        """The column that keys a logged prediction: the setting, else the first identifier."""
        if configured:
            return configured
        return next(iter(self.identifiers), None)

    @property
    def date_references(self) -> dict[str, float]:
        """Each date column's reference day (days since 1970), for the pipeline's date step."""
        return {f.name: f.date.reference_days for f in self.features if f.date is not None}

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def key_text(value: object) -> str | None:
    """A key as the prediction log stores it: whole numbers as digits (7.0 is "7"), text stripped.

    None for no value or blank text.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return repr(value)
        value = int(value)
    text = str(value).strip()
    return text or None


def blank_to_nan(col: pd.Series) -> pd.Series:
    import pandas as pd

    as_text = col.astype("string").str.strip()
    return as_text.mask(as_text == "", pd.NA)


def is_number_column(col: pd.Series) -> bool:
    """Numbers, not booleans (pandas counts bool as numeric)."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def as_float32_grid(values: pd.Series) -> pd.Series:
    """Numbers rounded to float32 precision, stored as float64.

    Serving may run the ONNX copy, which computes in float32; rounding every numeric input at
    this boundary (training, promotion and serving alike) means the pipeline and the ONNX copy
    see the very same numbers, so tree splits cannot fall differently between them.
    """
    return values.astype("float64").astype("float32").astype("float64")


def coerce_features(df: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Shape new rows exactly as training saw them: same columns, order, types, missing tokens."""
    import pandas as pd

    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise DataError(f"missing feature column(s): {', '.join(missing)}")
    out: dict[str, pd.Series] = {}
    for spec in schema.features:
        col = df[spec.name]
        if spec.date is not None:
            col = _dates(col, spec)
        elif spec.kind == "numeric" and not is_number_column(col):
            parsed = pd.to_numeric(blank_to_nan(col), errors="coerce")
            bad = parsed.isna() & blank_to_nan(col).notna()
            if bad.any():
                example = col[bad].iloc[0]
                raise DataError(
                    f"column {spec.name!r} must be numeric; found text {example!r} "
                    f"in {int(bad.sum())} row(s)"
                )
            col = parsed
        if spec.kind == "numeric":
            out[spec.name] = as_float32_grid(col)
            continue
        canonical = spec.canonical()
        if canonical is not None:
            col = cat.canonical_series(col, canonical)
        out[spec.name] = col.astype("string").fillna(MISSING_CATEGORY).astype(object)
    return pd.DataFrame(out, index=df.index)


def _dates(col: pd.Series, spec: FeatureSpec) -> pd.Series:
    """A date column (text, datetimes, or days as logged) as days since 1970-01-01 UTC."""
    # Imported here: dates loads scikit-learn (DateFeatures), which reading a schema does not need.
    from pgmlops.domain.dates import as_days

    assert spec.date is not None
    days = as_days(col, spec.date.format)
    bad = days.isna() & blank_to_nan(col.astype("string")).notna()
    if bad.any():
        raise DataError(
            f"column {spec.name!r} must be a date ({spec.date.format}); found "
            f"{col[bad].iloc[0]!r} in {int(bad.sum())} row(s)"
        )
    return days
