"""Every number README.md and docs/*.md quote from a study matches that study's table.

A quote is a number followed by ``<!-- q: ... -->`` (docs/conventions.md, Quoted numbers;
``mr2.report_quotes``). The checker must catch a wrong number, a wrong interval, a quote with no
number, a source that does not exist, and accept rounding to the digits quoted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mr2.report_quotes import check_quote, find_quotes, format_quote

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_quoted_number_matches_its_table():
    quotes = [q for page in PAGES for q in find_quotes(page.read_text(), str(page.relative_to(ROOT)))]
    assert any(q.file == "docs/conventions.md" for q in quotes)  # the format's own examples are live
    errors = [e for q in quotes if (e := check_quote(q, RESULTS))]
    assert not errors, "\n".join(errors)


def _one(text):
    (q,) = find_quotes(text)
    return check_quote(q, RESULTS)


SPEC = "fmnist-lt100 accuracy ldam-drw accuracy"


@pytest.mark.parametrize(
    "text",
    [
        f"+1.58 [+1.21, +1.95] <!-- q: {SPEC} diff -->",
        f"gains **+1.6** <!-- q: {SPEC} diff --> points",  # rounded to one decimal
        f"(Holm p = 0.012 <!-- q: {SPEC} holm -->)",
        f"p < 0.05 <!-- q: {SPEC} holm -->",
        f"5 <!-- q: {SPEC} n_paired --> seeds",
    ],
)
def test_right_numbers_pass(text):
    assert _one(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"+1.68 [+1.21, +1.95] <!-- q: {SPEC} diff -->", "1.68 quoted, but diff = 1.5"),
        (f"+1.58 [+1.21, +1.99] <!-- q: {SPEC} diff -->", "diff_ci_high"),
        (f"p = 0.12 <!-- q: {SPEC} holm -->", "p_holm"),
        (f"p < 0.01 <!-- q: {SPEC} holm -->", "'< 0.01' quoted"),
        (f"6 <!-- q: {SPEC} n_paired --> seeds", "n_paired = 5"),
        (f"seeds <!-- q: {SPEC} n_paired -->", "no number"),
        ("+1.58 <!-- q: fmnist-nowhere accuracy ldam-drw accuracy diff -->", "No such file"),
        (f"+1.58 <!-- q: {SPEC} diffs -->", "field 'diffs'"),
        ("+1.58 <!-- q: fmnist-lt100 accuracy ldam accuracy diff -->", "0 rows"),
    ],
)
def test_wrong_quotes_are_caught(text, reason):
    error = _one(text)
    assert error is not None and reason in error, error


def test_code_shows_the_syntax_and_is_not_checked():
    text = f"```\n+9.99 <!-- q: {SPEC} diff -->\n```\n`+9.99 <!-- q: {SPEC} diff -->`\n"
    assert find_quotes(text) == []


def test_format_quote_round_trips():
    quote = format_quote(["fmnist-lt10", "rho", "cdb", "centred a_k"], RESULTS)
    assert quote.endswith("<!-- q: fmnist-lt10 rho cdb 'centred a_k' -->")
    assert _one(quote) is None


def test_refresh_rewrites_a_stale_number_in_the_quotes_style():
    from mr2.report_quotes import refresh_quotes

    text = (
        f"gains +1.68 [+1.21, +1.99] <!-- q: {SPEC} diff --> points; "
        f"`+9.99 <!-- q: {SPEC} diff -->` stays; **+2** <!-- q: {SPEC} diff -->, "
        f"6 <!-- q: {SPEC} n_paired --> seeds, p < 0.0001 <!-- q: {SPEC} holm -->"
    )
    new, changes = refresh_quotes(text, RESULTS, "x.md")
    assert "`+9.99 <!-- q:" in new  # code is not a quote
    for q in find_quotes(new, "x.md"):
        if "holm" not in q.spec:
            assert check_quote(q, RESULTS) is None, q
    good = format_quote(SPEC.split() + ["diff"], RESULTS).split(" <!--")[0]
    assert f"gains {good} <!--" in new  # same two decimals and '+' style as written
    assert "**+1.6** <!--" in new or "**+2** <!--" in new  # one digit quoted -> one digit written
    assert "5 <!-- q" in new and "6 <!-- q" not in new
    assert any("not rewritten" in c and "'<'" in c for c in changes)  # a '<' quote is only listed
    assert sum("->" in c for c in changes) == 3


def test_refresh_leaves_matching_quotes_alone_and_keeps_the_minus_sign():
    from mr2.report_quotes import _render, refresh_quotes

    text = f"+1.58 [+1.21, +1.95] <!-- q: {SPEC} diff -->\n"
    assert refresh_quotes(text, RESULTS) == (text, [])
    assert _render("−0.25", -0.31) == "−0.31" and _render("-0.25", 0.31) == "+0.31"
    assert _render("12%", 7.04) == "7%" and _render("+0.004", -0.0001) == "+0.000"  # no "-0.000"
