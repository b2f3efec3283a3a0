"""Credentials never shown, locations not shown to anonymous clients, model names checked."""

from __future__ import annotations

import pytest

from pgmlops.config import check_model_name
from pgmlops.domain.redact import public_text, redact_secrets, redact_url
from pgmlops.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u@h/db?sslpassword=pw", "postgresql://u@h/db?sslpassword=***"),
        ("http://me:tok@mlflow:5000/?token=t#x", "http://me:***@mlflow:5000/?token=***#x"),
        ("host=db user=u password=pw dbname=x", "host=db user=u password=*** dbname=x"),
        ("host=db password='p w' dbname=x", "host=db password=*** dbname=x"),
        ("sqlite:////var/lib/pgmlops.db", "sqlite:////var/lib/pgmlops.db"),
    ],
)
def test_every_url_form_hides_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_inside_an_error_message_is_redacted_too() -> None:
    message = "cannot use postgresql://u:pw@h/db?password=pw2: refused"
    assert redact_secrets(message) == "cannot use postgresql://u:***@h/db?password=***: refused"


def test_anonymous_text_has_no_url_and_no_absolute_path() -> None:
    text = "v2 refused: /srv/art/churn/v2/model.joblib fails sha256 (postgresql://u@db/x)"
    assert public_text(text) == "v2 refused: <path> fails sha256 (<url>)"
    assert public_text("GET /health answered 1/2") == "GET /health answered 1/2"


@pytest.mark.parametrize("name", ["no spaces", "-dash", "x" * 129, "ok\n", "a/b", ""])
def test_model_names_outside_the_pattern_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is not a model name"):
        check_model_name(name)


def test_model_names_inside_the_pattern_pass() -> None:
    assert check_model_name("churn-v2.1_x") == "churn-v2.1_x"
