"""Live deployments' pure parts: shares, alias names, sticky buckets, which rows a canary takes."""

from __future__ import annotations

import random

import pytest

from pgmlops.config import Settings
from pgmlops.domain.live.modes import (
    Deployment,
    canary_rows,
    check_alias,
    parse_share,
    sticky_bucket,
)
from pgmlops.errors import ConfigError


def test_a_share_is_a_percent_or_a_fraction() -> None:
    assert parse_share("10%") == pytest.approx(0.1)
    assert parse_share("0.25") == pytest.approx(0.25)
    assert parse_share("100%") == 1.0


@pytest.mark.parametrize("bad", ["0%", "10", "150%", "-5%", "ten", "nan", ""])
def test_refuses_a_share_outside_zero_to_all(bad: str) -> None:
    with pytest.raises(ConfigError, match="canary share"):
        parse_share(bad)


@pytest.mark.parametrize("bad", ["production", "challenger", "Staging", "a b", "x" * 65])
def test_refuses_alias_names_deploy_may_not_set(bad: str) -> None:
    with pytest.raises(ConfigError, match="alias"):
        check_alias(bad)


def test_a_larger_share_keeps_every_key_the_smaller_one_sent() -> None:
    keys = [str(k) for k in range(5_000)]
    small = Deployment("canary", 0.1, "id")
    large = Deployment("canary", 0.3, "id")
    a = canary_rows("churn", small, keys, len(keys))
    b = canary_rows("churn", large, keys, len(keys))
    assert all(y for x, y in zip(a, b, strict=True) if x)
    # 5,000 keys at p = 0.1: within five standard deviations (21) of 500.
    assert abs(sum(a) - 500) < 5 * 21
    assert sticky_bucket("churn", "42") == sticky_bucket("churn", "42")


def test_a_row_without_its_sticky_key_stays_with_production() -> None:
    assert canary_rows("m", Deployment("canary", 1.0, "id"), [None, ""], 2) == [False, False]


def test_random_canary_share_is_within_binomial_bounds() -> None:
    rows = canary_rows("m", Deployment("canary", 0.2), None, 10_000, random.Random(1))
    # sd = sqrt(10000 * 0.2 * 0.8) = 40
    assert abs(sum(rows) - 2_000) < 5 * 40
    assert canary_rows("m", Deployment("shadow"), None, 3) == [False] * 3


def test_refuses_a_shadow_queue_of_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match="shadow_queue"):
        Settings(serving={"shadow_queue": 0})
