"""Live deployments: the challenger alias, its mode, and which rows a canary answers."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

from pgmlops.errors import ConfigError

CHALLENGER = "challenger"
Mode = Literal["shadow", "canary"]
# An alias name: it appears in URLs (`name@alias`), metric labels and the history.
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TWO_64 = float(1 << 64)


@dataclass(frozen=True)
class Deployment:
    """How the challenger serves: beside production (shadow) or for a share of rows (canary)."""

    mode: Mode
    share: float = 0.0
    sticky_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "share": self.share, "sticky_key": self.sticky_key}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Deployment | None:
        """The stored mode, or None for an alias that serves no live traffic."""
        if not data or data.get("mode") not in ("shadow", "canary"):
            return None
        key = data.get("sticky_key")
        return cls(data["mode"], float(data.get("share") or 0.0), str(key) if key else None)

    def describe(self) -> str:
        """'shadow' or 'canary 10% sticky by customer_id'."""
        if self.mode == "shadow":
            return "shadow"
        sticky = f" sticky by {self.sticky_key}" if self.sticky_key else ""
        return f"canary {self.share * 100:g}%{sticky}"


def parse_share(text: str | float) -> float:
    """'10%' or 0.1 -> 0.1; anything outside (0, 100%] is a one-line ConfigError."""
    raw = str(text).strip()
    what = f"canary share {raw!r}"
    try:
        share = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"{what}: give a share like 10% or 0.1") from None
    if not raw.endswith("%") and share > 1.0:
        raise ConfigError(f"{what}: a bare number is a fraction (0.1); write 10% for a percent")
    if not 0.0 < share <= 1.0:  # also refuses NaN
        raise ConfigError(f"{what}: the share must be above 0% and at most 100%")
    return share


def check_alias(alias: str) -> str:
    """An alias `deploy --alias` may set: lower-case, not production or challenger."""
    if not _ALIAS.match(alias):
        raise ConfigError(
            f"alias {alias[:70]!r}: lower-case letters, digits, '-' and '_', "
            "starting with a letter, at most 64 characters"
        )
    if alias == "production":
        raise ConfigError("alias production moves only by promotion, through the gates")
    if alias == CHALLENGER:
        raise ConfigError("alias challenger is set by deploying a shadow or a canary")
    return alias


def sticky_bucket(model_name: str, key: str) -> float:
    """A key's place in [0, 1): the same on every worker and host, for every share.

    A larger share keeps every key the smaller one sent to the challenger.
    """
    digest = hashlib.blake2b(f"{model_name}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


def canary_rows(
    model_name: str,
    deployment: Deployment,
    keys: list[Any] | None,
    n: int,
    rng: random.Random | None = None,
) -> list[bool]:
    """Per row, whether the challenger answers it.

    Sticky: by the hash of the key's text; a row without a key stays with production.
    Otherwise each row independently with probability `share`.
    """
    share = deployment.share
    if deployment.mode != "canary" or share <= 0.0:
        return [False] * n
    if deployment.sticky_key is not None:
        return [
            k is not None and k != "" and sticky_bucket(model_name, str(k)) < share
            for k in (keys or [None] * n)
        ]
    draw = (rng or random).random
    return [draw() < share for _ in range(n)]
