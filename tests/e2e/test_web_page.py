"""The web page at `/` as a user meets it: headless Chromium on a real server process.

The browser is Debian's `chromium` (or PGMLOPS_CHROMIUM, or a Chromium/Chrome on PATH) driven
by Playwright through `executable_path`; nothing is downloaded at run time. Without a browser
(or Playwright) the tests skip with a loud reason, except under CI (`CI=true`), where a
missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import orjson
import pandas as pd
import pytest

from pgmlops.services.commands import train_command

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

pytestmark = pytest.mark.e2e

# The documentation's pictures of the page and the report are taken by these tests, so they
# show what the tests just checked (docs/serving.md, docs/monitoring.md). They are rewritten
# only when asked (PGMLOPS_DOCS_SCREENSHOTS=1): a test run must not dirty the checkout.
DOC_ASSETS = Path(__file__).resolve().parents[2] / "docs" / "assets"
WRITE_DOC_ASSETS = os.environ.get("PGMLOPS_DOCS_SCREENSHOTS") == "1"


def _save_for_docs(page: Page, name: str, *, full_page: bool) -> None:
    """Screenshot the page as it is now, into docs/assets/<name>.png when asked, at 1280x900."""
    if not WRITE_DOC_ASSETS:
        page.screenshot(full_page=full_page)  # still taken: a page that cannot render fails
        return
    DOC_ASSETS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOC_ASSETS / f"{name}.png"), full_page=full_page)


def _find_chromium() -> str:
    """PGMLOPS_CHROMIUM, else Debian's /usr/bin/chromium, else a Chromium/Chrome on PATH."""
    if os.environ.get("PGMLOPS_CHROMIUM"):
        return os.environ["PGMLOPS_CHROMIUM"]
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium"


CHROMIUM = _find_chromium()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Long enough for a cold page on a busy 2-core machine, short enough to fail fast.
WAIT_MS = 15_000


def _unavailable(reason: str) -> NoReturn:
    message = f"WEB PAGE TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the browser is required here)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM}; install Debian's `chromium` package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the `playwright` package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        try:
            launched = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        except Exception as exc:  # the browser binary exists but cannot start here
            _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    script_errors: list[str] = []
    opened.on("pageerror", lambda exc: script_errors.append(str(exc)))
    yield opened
    context.close()
    assert script_errors == [], f"the page raised script errors: {script_errors}"


def _submit(page: Page) -> tuple[dict[str, Any], Response]:
    """Click Predict; the JSON the page sent and the server's response."""
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answer:
        page.click("#predict")
    response = answer.value
    sent = orjson.loads(response.request.post_data or b"null")
    return sent, response


def _other_option(page: Page, select: str) -> str:
    options = page.eval_on_selector_all(f"{select} option", "os => os.map(o => o.value)")
    current = page.input_value(select)
    return next(o for o in options if o != current)


def test_the_page_predicts_from_the_form_and_shows_the_card(
    ctx, server, trained, page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with server.client() as http:
        served = http.get("/models").json()
    card = served["card"]
    page.goto(f"{server.url}/")

    # The headline names the served model and version; the form IS the feature schema.
    expect(page.locator("#headline")).to_contain_text("churn v1")
    # One model served: no model picker.
    expect(page.locator("#pick")).to_be_hidden()
    for feature in card["feature_schema"]["features"]:
        tag = "select" if feature["kind"] == "categorical" else "input"
        expect(page.locator(f"{tag}#f_{feature['name']}")).to_be_visible()
    age_hint = page.locator("label[for=f_Age] small").inner_text()
    assert re.search(r"\d+\s*…\s*\d+", age_hint), f"no training range in {age_hint!r}"
    geographies = page.eval_on_selector_all("#f_Geography option", "os => os.map(o => o.value)")
    # Every category, and "(missing)" (an empty value) to send a missing one.
    assert set(geographies) == {"France", "Germany", "Spain", ""}

    # The model card and the promotion history come from the registry.
    card_table = page.locator("#card table")
    expect(card_table.locator("tr", has_text="version").locator("td")).to_have_text("1")
    expect(card_table.locator("tr", has_text="task").locator("td")).to_have_text("binary")
    expect(card_table).to_contain_text(str(card["data"]["rows"]))
    history = page.locator("#history table")
    expect(history).to_contain_text("promote")
    expect(history.locator("tr")).to_have_count(2)  # header + the one promotion of v1

    # Change Age and Geography, predict: what the form sent is what the user chose, and the
    # page shows what the server answered.
    geography = _other_option(page, "#f_Geography")
    page.fill("#f_Age", "61")
    page.select_option("#f_Geography", geography)
    sent, response = _submit(page)
    assert response.status == 200, response.text()
    assert sent["Age"] == 61 and sent["Geography"] == geography
    assert set(sent) == {f["name"] for f in card["feature_schema"]["features"]}
    answer = response.json()
    result = page.locator("#result")
    expect(page.locator("#prediction")).to_contain_text(f"Prediction: {answer['prediction']}")
    expect(result).to_contain_text(
        f"Probability of Exited = {card['positive_class']}: {answer['probability']:.3f}"
    )
    expect(page.locator("#decision")).to_have_text(
        f"confidence: {answer['confidence']:.3f} · risk: {answer['risk_level']}"
    )
    expect(result).to_contain_text(answer["prediction_id"])
    expect(result).not_to_have_class(re.compile("error"))
    page.screenshot(path=str(tmp_path / "web-page.png"), full_page=True)
    # Nothing sticks out sideways, on a desktop or a phone-sized window.
    for width in (1280, 400):
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a {width}px window"
    page.screenshot(path=str(tmp_path / "web-page-narrow.png"), full_page=True)

    # A cleared numeric field is not sent as a silent null: the page asks for a number or
    # for "missing" to be ticked.
    page.fill("#f_Balance", "")
    page.click("#predict")
    expect(result).to_have_class(re.compile("error"))
    expect(result).to_contain_text('Balance: empty; enter a number or tick "missing"')
    # Ticked "missing" is sent as null, which the model accepts as missing.
    page.check("#f_Balance__missing")
    sent, response = _submit(page)
    assert sent["Balance"] is None
    assert response.status == 200, response.text()
    expect(page.locator("#prediction")).to_contain_text(
        f"Prediction: {response.json()['prediction']}"
    )
    expect(result).to_contain_text(response.json()["prediction_id"])
    _page_and_report_answer_at_a_glance(ctx, server, trained, page)


def _page_and_report_answer_at_a_glance(ctx, server, trained, page: Page) -> None:
    """Importance, favicon, status, sparklines, range warnings; the report's charts drawn.

    A continuation of the test above (its server and trained versions): a server with two
    trained versions costs most of this module's time.
    """
    from playwright.sync_api import expect

    from pgmlops.domain.demo_data import make_churn

    page.set_viewport_size({"width": 1280, "height": 900})
    _log_and_monitor(
        ctx,
        trained["v1"],
        [make_churn(300, seed=40), make_churn(300, seed=41, numeric_shift=1.0)],
    )
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(f"{server.url}/")
    card = ctx.registry.get_version("churn", trained["v1"]).card
    importance = card.feature_importance
    assert importance is not None and set(importance.values) == set(card.feature_schema.names)

    # Feature importance: one bar per feature, from the card; a shipped favicon.
    bars = page.locator("#importance svg rect.bar")
    expect(bars).to_have_count(len(importance.values))
    assert page.get_attribute("link[rel=icon]", "href") == "favicon.svg"
    with server.client() as http:
        icon = http.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")

    # The monitoring status is the run's own, and the sparklines have dated axes.
    expect(page.locator("#monitor-status")).to_have_class(re.compile("degraded"))
    expect(page.locator(".spark svg polyline.series")).to_have_count(4)
    ticks = page.eval_on_selector_all(".spark svg text.tick", "ts => ts.map(t => t.textContent)")
    assert ticks and all(re.match(r"\d\d-\d\d", t) for t in ticks), ticks

    # Out of range: warned, predicted all the same; "(missing)" sends null.
    page.fill("#f_Age", "150")
    expect(page.locator("#f_Age__range")).to_contain_text("outside the training range")
    page.select_option("#f_Geography", "")
    sent, response = _submit(page)
    assert response.status == 200, response.text()
    assert sent["Age"] == 150 and sent["Geography"] is None
    expect(page.locator("#range-warning")).to_contain_text("Age = 150 is outside")
    expect(page.locator("#prediction")).to_be_visible()
    _save_for_docs(page, "web-page", full_page=True)

    # The report of the newest run, opened from the page: status first, charts drawn.
    page.click("text=full report")
    expect(page.locator("#status")).to_have_attribute("data-status", "degraded")
    drift_points = page.locator("#drift-over-time svg circle")
    assert drift_points.count() >= 2
    expect(page.locator("#performance-over-time svg polyline.series")).to_have_count(3)
    expect(page.locator("#confusion svg rect.cell")).to_have_count(4)
    expect(page.locator("#labelled-metrics tr[data-verdict]")).to_have_count(len(card.metrics))
    expect(page.locator("details#steady")).to_have_count(1)
    assert page.locator("svg rect").count() > 20
    _save_for_docs(page, "monitoring-report", full_page=False)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the report is {overflow}px wider than a {width}px window"
    assert console == [], f"console errors: {console}"


def test_the_model_picker_switches_the_form_and_predicts_with_the_chosen_model(
    multi, page: Page
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{multi.url}/")
    expect(page.locator("#headline")).to_contain_text("churn v1")
    expect(page.locator("#pick")).to_be_visible()
    options = page.eval_on_selector_all("#picker option", "os => os.map(o => o.value)")
    assert options == ["churn", "prices"]

    page.select_option("#picker", "prices")
    expect(page.locator("#headline")).to_contain_text("prices v1")
    expect(page.locator("input#f_area")).to_be_visible()
    expect(page.locator("#f_Age")).to_have_count(0)
    expect(page.locator("#card table")).to_contain_text("regression")
    page.fill("#f_area", "120")
    sent, response = _submit(page)
    assert response.url.endswith("/models/prices/predict"), response.url
    assert response.status == 200, response.text()
    assert sent["area"] == 120 and set(sent) == {"area", "rooms", "district"}
    answer = response.json()
    assert answer["model"] == "prices"
    expect(page.locator("#result")).to_contain_text(answer["prediction_id"])

    # Back to the default model: the form and /predict are churn's again.
    page.select_option("#picker", "churn")
    expect(page.locator("#headline")).to_contain_text("churn v1")
    sent, response = _submit(page)
    assert response.url.endswith("/predict") and "/models/" not in response.url
    assert response.status == 200 and response.json()["model"] == "churn"


def test_the_customer_key_typed_in_the_page_is_kept_in_the_prediction_log(
    server, ctx, page: Page
) -> None:
    from playwright.sync_api import expect
    from sqlalchemy import select

    from pgmlops.store.tables import PredictionRow

    page.goto(f"{server.url}/")
    # CustomerId is the identifier training left out: optional, logged, not a feature.
    key = page.locator("input#key")
    expect(key).to_be_visible()
    expect(page.locator("label[for=key]")).to_contain_text("not used by the model")
    key.fill(" 31415 ")
    sent, response = _submit(page)
    assert response.status == 200, response.text()
    assert sent["CustomerId"] == "31415"
    with server.client() as http:
        http.post("/feedback", json={"key": 31415, "label": 1}).raise_for_status()
    with ctx.db.session() as s:
        logged = s.execute(select(PredictionRow.id, PredictionRow.entity_key)).one()
    assert str(logged.id) == response.json()["prediction_id"] and logged.entity_key == "31415"


def test_errors_are_shown_in_the_page_and_it_keeps_working(server, page: Page) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/")
    expect(page.locator("#predict")).to_be_visible()
    result = page.locator("#result")

    # Text that is not a number in a number field is not silently sent as "missing".
    page.fill("#f_Age", "")
    page.locator("#f_Age").press_sequentially("4e")
    page.click("#predict")
    expect(result).to_have_class(re.compile("error"))
    expect(result).to_contain_text("Age: not a number")
    expect(page.locator("#prediction")).to_have_count(0)
    page.fill("#f_Age", "44")

    # The server unreachable: the page says so.
    page.route("**/predict", lambda route: route.abort("connectionrefused"))
    page.click("#predict")
    expect(result).to_contain_text("could not reach the server")
    page.unroute("**/predict")

    # A gateway in front of the service answering with an HTML error page (not JSON) is
    # reported as such instead of breaking the page.
    page.route(
        "**/predict",
        lambda route: route.fulfill(
            status=502, content_type="text/html", body="<html><h1>502 Bad Gateway</h1></html>"
        ),
    )
    _, response = _submit(page)
    assert response.status == 502
    expect(result).to_have_class(re.compile("error"))
    expect(result).to_contain_text("502")
    page.unroute("**/predict")

    # After these failures a valid record still gets a prediction.
    _, response = _submit(page)
    assert response.status == 200, response.text()
    expect(result).not_to_have_class(re.compile("error"))
    expect(page.locator("#prediction")).to_contain_text(response.json()["prediction"])


def test_a_form_left_open_across_a_promotion_is_rebuilt_for_the_new_version(
    server, ctx, page: Page, small_churn_csv: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/")
    expect(page.locator("#headline")).to_contain_text("churn v1")
    page.select_option("#f_Geography", "Germany")
    page.fill("#f_Age", "52")

    # Production moves to a version trained on renamed countries while the form is open.
    renamed = tmp_path / "churn-de.csv"
    frame = pd.read_csv(small_churn_csv)
    frame["Geography"] = frame["Geography"].replace({"Germany": "Deutschland"})
    frame.to_csv(renamed, index=False)
    new = train_command(
        ctx,
        data=str(renamed),
        target="Exited",
        model_name="churn",
        actor="t",
        overrides={"params": {"max_iter": 40}},
    )["version"]
    promoted = httpx.post(
        f"{server.url}/promote",
        json={"version": new, "force": True, "reason": "renamed countries"},
        headers=server.admin_headers(),
        timeout=60,
    )
    assert promoted.status_code == 200, promoted.text

    # The stale choice is refused; the page says why and rebuilds the form for the new version.
    sent, response = _submit(page)
    assert sent["Geography"] == "Germany" and response.status == 422
    result = page.locator("#result")
    expect(result).to_have_class(re.compile("error"))
    expect(result).to_contain_text("Geography")
    expect(result).to_contain_text(f"v{new}")
    expect(page.locator("#headline")).to_contain_text(f"churn v{new}")
    options = page.eval_on_selector_all("#f_Geography", "s => [...s[0].options].map(o => o.value)")
    assert "Deutschland" in options and "Germany" not in options
    assert page.input_value("#f_Age") == "52", "values of unchanged fields are kept"
    expect(page.locator("#history table")).to_contain_text("renamed countries")
    page.screenshot(path=str(tmp_path / "web-page-stale-form.png"), full_page=True)

    page.select_option("#f_Geography", "Deutschland")
    sent, response = _submit(page)
    assert response.status == 200, response.text()
    assert response.json()["version"] == new
    expect(page.locator("#prediction")).to_be_visible()
    expect(result).to_contain_text(f"v{new}")


def _log_and_monitor(ctx, version: int, frames: list[pd.DataFrame]) -> None:
    """Score frames with the served version as the server does, log them, monitor each."""
    import time

    from pgmlops.services.monitoring.run import run_monitor
    from pgmlops.services.serving.load import load_version
    from pgmlops.services.serving.prediction import predict_records
    from pgmlops.store.prediction_log.predictions import PredictionStore

    model = load_version(ctx, ctx.registry.get_version("churn", version))
    names = model.card.feature_schema.names
    for frame in frames:
        rows = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
        _, records = predict_records(
            model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
        )
        store = PredictionStore(ctx.db)
        store.write_batch(records)
        store.add_feedback([(r.id, str(y)) for r, y in zip(records, frame["Exited"], strict=True)])
        run_monitor(ctx, "churn", last=len(frame))


def test_the_page_shows_the_live_comparison_of_production_and_its_challenger(
    server, ctx, trained, page: Page
) -> None:
    from playwright.sync_api import expect

    from pgmlops import Client
    from tests.integration.test_live_comparison import log_traffic

    page.goto(f"{server.url}/")
    expect(page.locator("#live")).to_contain_text("no challenger deployed")
    client = Client(context=ctx)
    client.deploy("churn", trained["v2"], shadow=True)
    log_traffic(
        client, mode="shadow", n=300, labelled=250, production_skill=0.2, challenger_skill=0.9
    )
    page.reload()
    traffic = page.locator("#live-traffic")
    expect(traffic).to_contain_text("shadow")
    expect(traffic).to_contain_text("0.00%")  # every production row has its shadow row
    shadow = page.locator("#live-shadow")
    expect(shadow).to_contain_text("(paired)")
    expect(shadow).to_contain_text("agreement")
    expect(shadow.locator(".ok")).to_contain_text("roc_auc gain +")
    expect(shadow.locator(".ok")).to_contain_text("paired, n=250")
    with page.expect_navigation():
        page.click("#live a")
    expect(page.locator("h1")).to_contain_text("Live comparison")
    expect(page.locator("#live-shadow")).to_contain_text("Shadow traffic")
