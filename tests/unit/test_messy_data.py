"""Messy data read the way a user means it: dates, spellings, booleans, rare values, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from pgmlops.cli.options import cli_message
from pgmlops.config import ServingConfig
from pgmlops.domain.categories import looks_boolean, near_duplicates
from pgmlops.domain.dates import ISO, date_features, detect_format, to_days
from pgmlops.domain.schema import ReadOptions, coerce_features
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.domain.training.pipeline import build_pipeline, make_estimator
from pgmlops.errors import ConfigError, DataError
from pgmlops.services.datasets import load_file, sniff_decimal, sniff_delimiter
from pgmlops.services.serving.record_model import record_model

N = 120


def messy_frame(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    days = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.arange(n) * 5, unit="D")
    return pd.DataFrame(
        {
            "signup": days.strftime("%d/%m/%Y"),
            "region": rng.choice(["North", "north ", "NORTH", "South", "Sout"], n),
            "member": rng.choice(["yes", "no", "Yes"], n),
            "x": rng.normal(size=n),
            "y": rng.choice(["a", "b"], n),
        }
    )


def test_a_date_column_is_read_as_dates_not_left_out_as_an_identifier() -> None:
    x, _, schema = prepare_training_frame(messy_frame(), "y")
    spec = schema.feature("signup")
    assert "signup" not in schema.dropped
    assert spec.date is not None and spec.date.format == "%d/%m/%Y"
    assert spec.date.reference == "2023-01-01"
    assert x["signup"].iloc[1] == to_days(pd.Series(["2023-01-06"]), ISO).iloc[0]


def test_dates_left_out_by_setting_are_reported_as_date() -> None:
    options = ReadOptions(dates="drop")
    _, _, schema = prepare_training_frame(messy_frame(), "y", options=options)
    assert schema.dropped_kinds["signup"] == "date"


@pytest.mark.parametrize(
    ("values", "dayfirst", "expected"),
    [
        (["2024-03-01", "2024-12-31"], True, (ISO, False)),
        (["2024-03-01T12:00:00+02:00", "2024-03-02T08:00:00Z"], True, (ISO, False)),
        (["2024-03-01 12:00", "2024-03-02 13:30:05"], True, (ISO, False)),
        (["31/12/2024", "01/03/2024"], True, ("%d/%m/%Y", False)),
        (["12/31/2024", "03/01/2024"], True, ("%m/%d/%Y", False)),
        # Every day is 12 or less: either order fits, the setting decides and it is flagged.
        (["01/03/2024", "02/03/2024"], True, ("%d/%m/%Y", True)),
        (["01/03/2024", "02/03/2024"], False, ("%m/%d/%Y", True)),
        (["1.03.2024", "28.02.2024"], True, ("%d.%m.%Y", False)),
        # Month names, as spreadsheets and US exports write them.
        (["Aug 18, 2024", "Sep 1, 2023"], True, ("%b %d, %Y", False)),
        (["18 Aug 2024", "1 Sep 2023"], False, ("%d %b %Y", False)),
        (["August 18, 2024", "September 1, 2023"], True, ("%B %d, %Y", False)),
        (["18-Aug-2024", "01-Sep-2023"], True, ("%d-%b-%Y", False)),
        (["2024", "2025"], True, None),
        (["12:00", "13:00"], True, None),
        (["North", "South"], True, None),
    ],
)
def test_date_formats_are_detected(values: list[str], dayfirst: bool, expected) -> None:
    assert detect_format(pd.Series(values * 3), dayfirst=dayfirst) == expected


def test_month_name_dates_are_read_as_the_same_day_in_every_style() -> None:
    styles = {
        "%b %d, %Y": "Aug 18, 2024",
        "%d %b %Y": "18 Aug 2024",
        "%B %d, %Y": "August 18, 2024",
    }
    expected = to_days(pd.Series(["2024-08-18"]), ISO).iloc[0]
    for fmt, text in styles.items():
        assert to_days(pd.Series([text]), fmt).iloc[0] == expected
    frame = pd.DataFrame(
        {
            "when": ["Aug 18, 2024", "Jan 2, 2023", "Dec 31, 2022", "Mar 9, 2024"] * 10,
            "y": ["a", "b"] * 20,
        }
    )
    _, _, schema = prepare_training_frame(frame, "y")
    assert schema.feature("when").date is not None


def test_a_datetime_with_an_offset_is_read_in_utc() -> None:
    days = to_days(pd.Series(["2024-03-01T02:00:00+02:00", "2024-03-01T00:00:00Z"]), ISO)
    assert days.iloc[0] == days.iloc[1]


def test_calendar_features_of_known_days() -> None:
    days = to_days(pd.Series(["2024-03-01", "2024-12-31", None]), ISO).to_numpy()
    parts = date_features(days, reference=days[0])
    assert parts["year"][:2].tolist() == [2024, 2024]
    assert parts["month"][:2].tolist() == [3, 12]
    assert parts["day_of_week"][:2].tolist() == [4, 1]  # Friday, Tuesday (Monday is 0)
    assert parts["day_of_year"][:2].tolist() == [61, 366]
    assert parts["days_since"][:2].tolist() == [0, 305]
    assert all(np.isnan(v[2]) for v in parts.values())


def test_the_fitted_pipeline_derives_the_date_features() -> None:
    x, y, schema = prepare_training_frame(messy_frame(), "y")
    est = make_estimator(None, {"max_iter": 5}, schema.task, 0)
    pipe = build_pipeline(x, est, dates=schema.date_references).fit(x, y)
    expanded = pipe.named_steps["dates"].transform(x.head(2))
    assert {"signup__year", "signup__day_of_week", "signup__days_since"} <= set(expanded)
    assert expanded["signup__days_since"].tolist() == [0.0, 5.0]


def test_spellings_are_merged_and_near_duplicates_named_but_kept() -> None:
    notes: list[str] = []
    x, _, schema = prepare_training_frame(messy_frame(), "y", notes=notes)
    region = schema.feature("region")
    # One spelling per value: the most frequent of North/north /NORTH stands for all three.
    assert region.folded and len(region.categories or []) == 3
    assert any("merged" in n and "NORTH" in n for n in notes)
    assert any("NOT merged" in n and "'Sout'/'South'" in n for n in notes)
    served = coerce_features(
        pd.DataFrame({**x.head(1).to_dict("list"), "region": [" nOrTh"]}), schema
    )
    assert served["region"].iloc[0] in region.categories


def test_normalisation_can_be_turned_off() -> None:
    options = ReadOptions(normalize_categories=False)
    _, _, schema = prepare_training_frame(messy_frame(), "y", options=options)
    assert len(schema.feature("region").categories or []) == 5


def test_near_duplicates_ignore_codes_that_differ_by_a_digit() -> None:
    assert near_duplicates(["Paris", "Pariss", "c10", "c102", "A-1", "A-2"]) == [
        ("Paris", "Pariss")
    ]


def test_rare_values_are_pooled_as_other_with_a_warning() -> None:
    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame(
        {
            "shop": [f"s{int(v)}" for v in rng.zipf(1.4, n) % 90],
            "y": rng.choice(["a", "b"], n),
        }
    )
    notes: list[str] = []
    _, _, schema = prepare_training_frame(
        frame, "y", options=ReadOptions(max_categories=10), notes=notes
    )
    spec = schema.feature("shop")
    assert spec.pooled and "other" in (spec.categories or [])
    assert len(spec.categories or []) <= 11  # ten values, and missing if any
    assert any("pooled as 'other'" in n for n in notes)
    served = coerce_features(pd.DataFrame({"shop": ["never-seen"]}), schema)
    assert served["shop"].iloc[0] == "other"


def test_rows_without_a_target_are_counted() -> None:
    frame = messy_frame()
    frame.loc[:6, "y"] = None
    frame.loc[7, "y"] = "  "
    notes: list[str] = []
    x, _, _ = prepare_training_frame(frame, "y", notes=notes)
    assert len(x) == N - 8
    assert "8 row(s) dropped: target column 'y' is empty there" in notes


def test_a_target_with_too_many_classes_is_refused_with_a_hint() -> None:
    frame = pd.DataFrame(
        {"x": [i % 7 for i in range(300)], "y": [f"c{i % 60}" for i in range(300)]}
    )
    with pytest.raises(DataError, match=r"60 classes, more than training.max_classes \(50\)"):
        prepare_training_frame(frame, "y", task="multiclass")
    _, _, schema = prepare_training_frame(
        frame, "y", task="multiclass", options=ReadOptions(max_classes=60)
    )
    assert len(schema.classes or []) == 60


@pytest.mark.parametrize(
    "values",
    [[True, False], ["True", "False"], ["yes", "No", "YES"], ["0", "1"], ["y", "n", None]],
)
def test_boolean_columns_are_detected(values: list) -> None:
    assert looks_boolean(pd.Series(values * 5, dtype=object))


@pytest.mark.parametrize("values", [["yes", "no", "maybe"], ["yes"], [0, 1], ["1", "2"]])
def test_other_columns_are_not_booleans(values: list) -> None:
    assert not looks_boolean(pd.Series(values * 5))


def test_served_records_take_json_booleans_case_variants_and_dates() -> None:
    _, _, schema = prepare_training_frame(messy_frame(), "y")
    record = TypeAdapter(record_model(schema, ServingConfig()))
    ok = record.validate_python(
        {"signup": "2024-03-01", "region": " SOUTH", "member": True, "x": 0.5}
    )
    assert ok.member == "True" and ok.region == "South"
    assert ok.signup == to_days(pd.Series(["2024-03-01"]), ISO).iloc[0]
    assert (
        record.validate_python(
            {"signup": "01/03/2024", "region": "south", "member": "no", "x": 0.5}
        ).member
        == "False"
    )
    for field, bad in [("signup", "someday"), ("member", "perhaps"), ("region", "West")]:
        good = {"signup": "2024-03-01", "region": "South", "member": False, "x": 0.5}
        with pytest.raises(PydanticValidationError, match=field):
            record.validate_python({**good, field: bad})


def test_a_bad_date_in_a_batch_is_a_one_line_error() -> None:
    _, _, schema = prepare_training_frame(messy_frame(), "y")
    rows = pd.DataFrame({"signup": ["not a date"], "region": ["North"], "member": ["yes"]})
    with pytest.raises(DataError, match=r"column 'signup' must be a date"):
        coerce_features(rows.assign(x=1.0), schema)


@pytest.mark.parametrize(
    ("text", "sep"),
    [
        ("a;b;c\n1;2,5;x\n3;4,5;y\n", ";"),
        ("a\tb\tc\n1\t2\tx\n", "\t"),
        ("a|b|c\n1|2|x\n", "|"),
        ("a,b,c\n1,2,x\n", ","),
        ("name,note\nx,a;b;c\ny,d;e;f\n", ","),
    ],
)
def test_the_delimiter_is_sniffed(text: str, sep: str) -> None:
    assert sniff_delimiter(text) == sep


def test_a_semicolon_cp1252_file_reads_with_warnings(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("city;amount;y\nZürich;1,5;a\nGenève;2,5;b\n".encode("cp1252"))
    dataset = load_file(str(path))
    assert list(dataset.frame.columns) == ["city", "amount", "y"]
    assert dataset.frame["city"].tolist() == ["Zürich", "Genève"]
    assert dataset.source["sep"] == ";" and dataset.source["encoding"] == "cp1252"
    # "1,5" in a semicolon file is a decimal comma: read as a number, with a note.
    assert dataset.frame["amount"].tolist() == [1.5, 2.5]
    # Each note says in Python what overrides the guess; the command line names the flag.
    assert dataset.notes == [
        "data.csv: columns separated by ';' (sniffed; sep= overrides)",
        "data.csv: numbers read with decimal commas (sniffed; decimal= overrides)",
        "data.csv: read as cp1252 text, not UTF-8 (encoding= overrides)",
    ]
    assert [cli_message(note) for note in dataset.notes] == [
        "data.csv: columns separated by ';' (sniffed; --sep overrides)",
        "data.csv: numbers read with decimal commas (sniffed; --decimal overrides)",
        "data.csv: read as cp1252 text, not UTF-8 (--encoding overrides)",
    ]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfa,y\n1,2\n")
    assert list(load_file(str(bom)).frame.columns) == ["a", "y"]


@pytest.mark.parametrize(
    ("text", "sep", "decimal"),
    [
        ("a;b;y\n1,5;2;x\n-0,25;3;z\n", ";", ","),
        ("a;b;y\n1.5;2;x\n0.25;3;z\n", ";", "."),
        # A point-decimal column says the commas elsewhere are something else.
        ("a;b;y\n1,5;2.5;x\n0,25;3.5;z\n", ";", "."),
        ("a;y\nred, blue;x\ngreen;z\n", ";", "."),
        ("a,y\n1,2\n", ",", "."),
    ],
)
def test_the_decimal_mark_is_sniffed(text: str, sep: str, decimal: str) -> None:
    assert sniff_decimal(text, sep) == decimal


def test_sep_and_encoding_overrides_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a:b\n1:2\n")
    assert list(load_file(str(path), sep=":").frame.columns) == ["a", "b"]
    with pytest.raises(ConfigError, match="single character"):
        load_file(str(path), sep="::")
    with pytest.raises(ConfigError, match="not a known encoding"):
        load_file(str(path), encoding="klingon")


def test_an_unsplit_header_hints_at_sep() -> None:
    frame = pd.DataFrame({"a;b;target": ["1;2;3"]})
    with pytest.raises(DataError, match=r"not split: give sep, e\.g\. ';'"):
        prepare_training_frame(frame, "target")


def test_retraining_rows_keep_dates_and_spellings_as_training_read_them() -> None:
    from pgmlops.services.retraining.data import validate_rows

    frame = messy_frame()
    _, _, schema = prepare_training_frame(frame, "y")
    logged = pd.DataFrame(
        {
            "signup": [to_days(pd.Series(["2024-02-29"]), ISO).iloc[0], "31/12/2024", "nope"],
            "region": ["SOUTH ", "north", "South"],
            "member": [True, "no", "yes"],
            "x": [0.1, 0.2, 0.3],
            "y": ["a", "b", "a"],
        }
    )
    good, report = validate_rows(logged, schema, "y")
    assert report.reasons == {"feature 'signup' is not a date": 1}
    assert good["signup"].tolist() == ["29/02/2024", "31/12/2024"]
    assert good["region"].iloc[0] == "South" and good["member"].tolist() == ["True", "False"]
    # A retrain reads every part through validate_rows, the recorded source too.
    source, _ = validate_rows(frame, schema, "y")
    _, _, again = prepare_training_frame(pd.concat([source, good]), "y")
    assert again.feature("signup").date is not None and again.feature("member").boolean


@pytest.mark.parametrize(
    ("values", "example"),
    [
        (["1 234,5", "2 000,0", "12,5", "7"], "1 234,5"),
        (["1.234,50", "3,5", "n/a", "4,25"], "1.234,50"),
        (["1'250.00", "€ 12", "80 %", "x"], "1'250.00"),
    ],
)
def test_a_column_that_looks_numeric_but_is_read_as_text_is_warned_about(
    values: list[str], example: str
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"amount": [values[i % len(values)] for i in range(40)], "y": rng.choice(["a", "b"], 40)}
    )
    notes: list[str] = []
    _, _, schema = prepare_training_frame(frame, "y", notes=notes)
    assert schema.feature("amount").kind == "categorical"
    warned = [n for n in notes if "looks numeric" in n]
    assert len(warned) == 1 and "'amount'" in warned[0] and repr(example) in warned[0], notes


def test_words_and_dates_are_not_called_numeric() -> None:
    frame = pd.DataFrame(
        {
            "colour": ["red", "blue", "1", "green"] * 10,
            "day": ["18.08.2024", "01.01.2023", "02.03.2022", "04.05.2021"] * 10,
            "y": ["a", "b"] * 20,
        }
    )
    notes: list[str] = []
    prepare_training_frame(frame, "y", notes=notes)
    assert not [n for n in notes if "looks numeric" in n], notes


def _target_frame(y: list) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"x": rng.normal(size=len(y)), "y": y})


def test_a_class_seen_once_is_refused_naming_its_row_and_value() -> None:
    y = ["a", "b"] * 30
    y[11] = "c"
    with pytest.raises(DataError) as err:
        prepare_training_frame(_target_frame(y), "y", min_class_rows=3)
    assert "row 12: 'c'" in str(err.value) and "fewer than 3 rows" in str(err.value)
    assert "task='regression'" not in str(err.value)


def test_text_in_a_regression_target_is_refused_naming_rows_and_values() -> None:
    y = [str(v / 10) for v in range(60)]
    y[11] = y[39] = "n/a"
    y[5] = "?"
    with pytest.raises(DataError) as err:
        prepare_training_frame(_target_frame(y), "y", task="regression")
    assert "rows 12, 40: 'n/a'; row 6: '?'" in str(err.value), err.value
    y = [str(v / 10) for v in range(60)]
    y[11] = "n/a"
    with pytest.raises(DataError) as err:
        prepare_training_frame(_target_frame(y), "y")
    assert "target column 'y' is numeric" in str(err.value)
    assert "row 12: 'n/a'" in str(err.value)


def test_a_count_target_with_rare_values_suggests_regression() -> None:
    rng = np.random.default_rng(2)
    counts = np.minimum(rng.poisson(2, 400), 5).tolist()
    once = 20
    with pytest.raises(DataError) as err:
        prepare_training_frame(_target_frame([*counts, once]), "y", min_class_rows=3)
    assert f"row 401: '{once}'" in str(err.value) and "task='regression'" in str(err.value)
    # Rare values with enough rows for the split: trained as classes, with a hint.
    kept = [0, 1, 2] * 100 + [3, 4, 5, 6, 7, 8] * 4
    notes: list[str] = []
    _, _, schema = prepare_training_frame(_target_frame(kept), "y", notes=notes, min_class_rows=3)
    assert schema.task == "multiclass"
    (hint,) = [n for n in notes if "whole numbers" in n]
    assert hint.endswith("if they are counts or amounts, train with task='regression'")
    assert cli_message(hint).endswith("if they are counts or amounts, train with --task regression")
    # Told it is a class task, or plain labels: no hint.
    notes = []
    prepare_training_frame(_target_frame(["a", "b"] * 30), "y", notes=notes)
    assert not [n for n in notes if "regression" in n]
