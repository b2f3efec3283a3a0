"""What a reference profile holds: per-column summaries, model outputs and sampled rows.

Pydantic models that round-trip through JSON; domain/monitoring/profile.py builds them from a frame.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from pgmlops.domain.monitoring.design_effect import SampleDesign
from pgmlops.domain.schema import MISSING_CATEGORY
from pgmlops.errors import DataError

PROFILE_VERSION = 1


class NumericProfile(BaseModel):
    """A numeric column: counts at a quantile grid, PSI bins, moments and a sample."""

    kind: Literal["numeric"] = "numeric"
    name: str
    n: int = Field(description="rows, missing ones included")
    n_missing: int
    mean: float | None = None
    std: float | None = None
    grid: list[float] = Field(description="ascending distinct values (quantiles or fixed)")
    grid_counts: list[int] = Field(description="reference values <= each grid value")
    psi_edges: list[float] = Field(description="inner edges of the PSI bins, ascending")
    psi_counts: list[int] = Field(description="reference values per PSI bin, missing excluded")
    sample: list[float] = Field(default_factory=list, description="seeded random values")

    @property
    def missing_rate(self) -> float:
        return self.n_missing / self.n if self.n else 0.0


class CategoricalProfile(BaseModel):
    """A categorical column: the count of every category, missing as ``MISSING_CATEGORY``."""

    kind: Literal["categorical"] = "categorical"
    name: str
    n: int
    counts: dict[str, int]

    @property
    def missing_rate(self) -> float:
        return self.counts.get(MISSING_CATEGORY, 0) / self.n if self.n else 0.0


ColumnProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class OutputProfile(BaseModel):
    """Model outputs on reference data: P(positive), predicted classes or predicted values."""

    kind: Literal["probability", "class", "prediction"]
    distribution: ColumnProfile
    classes: list[str] | None = Field(None, description="column order of class probabilities")
    mean_confidence: float | None = None
    design: SampleDesign | None = Field(None, description="how the rows were drawn; None: iid")

    @property
    def inflation(self) -> float:
        return self.design.inflation if self.design is not None else 1.0


class ReferenceRows(BaseModel):
    """A seeded sample of whole reference rows, column by column (missing numbers as null)."""

    n: int
    numeric: dict[str, list[float | None]] = Field(default_factory=dict)
    categorical: dict[str, list[str]] = Field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The rows as a frame: numbers as float64 with NaN, categories as text."""
        cols: dict[str, object] = {
            name: np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            for name, values in self.numeric.items()
        }
        cols.update(
            {name: pd.Series(values, dtype=object) for name, values in self.categorical.items()}
        )
        return pd.DataFrame(cols)


class ReferenceProfile(BaseModel):
    """Everything drift monitoring needs about the reference data, in one JSON document."""

    version: int = PROFILE_VERSION
    n_rows: int
    seed: int = 0
    features: list[ColumnProfile]
    output: OutputProfile | None = None
    rows: ReferenceRows | None = Field(
        None, description="sampled whole rows for the domain classifier; None in old profiles"
    )
    design: SampleDesign | None = Field(None, description="how the rows were drawn; None: iid")

    @property
    def inflation(self) -> float:
        """Variance inflation of the feature tests' reference (1 for old profiles)."""
        return self.design.inflation if self.design is not None else 1.0

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> NumericProfile | CategoricalProfile:
        """The profile of one feature; DataError when the profile does not have it."""
        for f in self.features:
            if f.name == name:
                return f
        raise DataError(f"the reference profile has no feature {name!r}")
