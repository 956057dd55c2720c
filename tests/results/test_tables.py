import json
import math

import pandas as pd
import pytest

from harness.results.frames import results_frame
from harness.results.stats import aggregate
from harness.results.tables import escape_markdown, format_summary, markdown_table, mean_std, render

NASTY = "a | b `code` c\nd\r\ne *f* _g_ <h> [i](j) \\ & #k ~l~"


def test_escaping_keeps_pipes_backticks_and_newlines_literal() -> None:
    text = escape_markdown(NASTY)
    assert "\n" not in text and "\r" not in text and text.count("<br>") == 2
    assert "\\|" in text and "\\`code\\`" in text and "\\*f\\*" in text and "\\_g\\_" in text
    assert "\\<h\\>" in text and "\\[i\\](j)" in text and "\\\\" in text and "&amp;" in text
    # No pipe or backtick is left unescaped (each is preceded by one backslash).
    for char in "|`":
        assert all(text[i - 1] == "\\" for i, c in enumerate(text) if c == char)


def test_a_table_with_nasty_text_keeps_its_shape() -> None:
    table = markdown_table(pd.DataFrame({"model": ["m", "n"], "text": [NASTY, "ok"]}))
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two rows
    unescaped = [line.replace("\\|", "") for line in lines]
    assert all(line.count("|") == 3 for line in unescaped)


def test_missing_numbers_are_empty_cells_and_numbers_keep_their_format() -> None:
    frame = pd.DataFrame({"x": [1.0, math.nan], "y": [math.nan, math.nan]})
    lines = markdown_table(frame, floatfmt=".3f").splitlines()
    assert "nan" not in "".join(lines)
    assert lines[2].split("|")[1].strip() == "1.000" and lines[3].split("|")[1].strip() == ""


def test_numbers_in_text_cells_are_not_reformatted() -> None:
    table = markdown_table(pd.DataFrame({"text": ["1e5", "007"]}))
    assert "1e5" in table and "007" in table


def test_mean_std_shows_what_is_defined() -> None:
    assert mean_std(1.23456, 0.01, 3) == "1.235 ± 0.010"
    assert mean_std(1.23456, math.nan, 3) == "1.235"
    assert mean_std(math.nan, math.nan, 3) == ""


def test_csv_and_json_keep_full_precision_and_missing_values() -> None:
    frame = pd.DataFrame({"model": ["m"], "x": [1 / 3], "y": [math.nan]})
    assert render(frame, "csv").splitlines() == ["model,x,y", "m,0.3333333333333333,"]
    assert json.loads(render(frame, "json")) == [{"model": "m", "x": 1 / 3, "y": None}]
    with pytest.raises(ValueError, match="unknown format"):
        render(frame, "xml")


def test_summary_markdown_shows_mean_std_and_seed_counts() -> None:
    summary = pd.DataFrame([{"model": "m", "sampler": "s", "n": 3, "n_ok": 2,
                             "train_ppl_mean": 1.5, "train_ppl_std": 0.25,
                             "valid_ppl_mean": math.nan, "valid_ppl_std": math.nan,
                             "tokens_per_sec_mean": 1000.4, "tokens_per_sec_std": 10.0,
                             "not_ok": "failed: 2"}])
    text = format_summary(summary)
    assert "| m " in text and "2/3" in text and "1.500 ± 0.250" in text
    assert "1000 ± 10" in text and "failed: 2" in text


def test_a_summary_with_no_rows_is_a_header_in_every_format() -> None:
    empty = aggregate(results_frame([]))  # a run interrupted before its first record
    lines = format_summary(empty).splitlines()
    assert len(lines) == 2 and lines[0].startswith("| model") and "seeds ok" in lines[0]
    assert markdown_table(pd.DataFrame({"a": [], "b": []}), index=True).count("\n") == 1
    assert format_summary(empty, "csv").startswith("model,sampler,n,n_ok")
    assert json.loads(format_summary(empty, "json")) == []
