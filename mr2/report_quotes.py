"""Numbers quoted in Markdown, tied to the report table they come from and checked against it.

A quote is the number (or ``number [low, high]``) written just before an HTML comment that names its
source; the comment is invisible in rendered Markdown::

    LDAM-DRW gains +1.58 [+1.21, +1.95] <!-- q: fmnist-lt100 accuracy ldam-drw balanced_accuracy diff -->
    points (Holm p = 0.0021 <!-- q: fmnist-lt100 accuracy ldam-drw balanced_accuracy holm -->,
    6 <!-- q: fmnist-lt100 accuracy ldam-drw accuracy n_paired --> seeds).

Comment grammar (words split like a shell line, so a name with spaces is quoted: ``"centred a_k"``):

* ``q: STUDY SELECTION METHOD METRIC FIELD`` -- a row of ``docs/results/STUDY/summary.csv``;
* ``q: STUDY rho METHOD STATISTIC [FIELD]`` -- a row of ``correlation.csv`` (FIELD ``rho``, the default,
  or ``n``, ``hardest_match``);
* ``q: STUDY over SELECTION METHOD METRIC FIELD`` -- a row of ``over_backbones.csv`` (``mr2 report
  --over``; FIELD ``diff``, ``p``, ``holm``, ``share``, ``n``, ``tost``, ``mde``).

FIELD and what the quoted text must show (:data:`FIELDS`): ``diff`` the paired difference in accuracy
points, with its CI when brackets follow; ``mean`` the mean over seeds with its CI, as a fraction (or in
percent when the number ends with ``%``); ``p`` the paired-t p-value; ``holm`` the Holm-adjusted p;
``n`` seeds; ``n_paired`` paired seeds; ``mde`` and ``tost`` in points; ``share`` the backbone share in
percent. A number matches when it equals the table's value rounded to the decimals quoted (``0.36``
matches 0.3573; ``1.6`` matches 1.58); ``< 0.001`` matches any value below 0.001.
``python -m mr2.report_quotes STUDY ...`` prints a quote with its comment, ready to paste;
``python -m mr2.report_quotes --refresh FILE ...`` rewrites, after a report was re-issued, every quoted
number of those files that no longer matches its table (same decimals, same sign style) and lists each
change, so that the sentence around it can be re-read; ``--check FILE ...`` only lists the mismatches.
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mr2_core.io import write_text

__all__ = ["FIELDS", "Quote", "find_quotes", "check_quote", "format_quote", "refresh_quotes", "main"]

POINTS = 100.0
# FIELD -> (columns of point, low, high; scale of the quoted text)
FIELDS = {
    "diff": (("diff", "diff_ci_low", "diff_ci_high"), POINTS),
    "mean": (("point", "ci_low", "ci_high"), 1.0),
    "p": (("p_value",), 1.0),
    "holm": (("p_holm",), 1.0),
    "n": (("n_seeds",), 1.0),
    "n_paired": (("n_paired",), 1.0),
    "mde": (("mde",), POINTS),
    "tost": (("tost_bound",), POINTS),
    "rho": (("rho", "ci_low", "ci_high"), 1.0),
    "hardest_match": (("hardest_match",), 1.0),
    "share": (("backbone_share",), 100.0),
}
_OVER_FIELDS = {"diff": (("diff", "ci_low", "ci_high"), POINTS), "p": (("p_value",), 1.0),
                "holm": (("p_holm",), 1.0), "share": (("backbone_share",), 100.0),
                "n": (("n_backbones",), 1.0), "tost": (("tost_bound",), POINTS),
                "mde": (("mde",), POINTS)}  # fmt: skip
_NUM = r"[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?"
_INLINE_CODE = re.compile(r"`[^`]*`")
_COMMENT = re.compile(r"<!--\s*q:(?P<spec>.*?)-->")
_QUOTED = re.compile(
    rf"(?P<cmp><|≤)?\s*(?P<x>{_NUM})(?:\s*\[\s*(?P<lo>{_NUM})\s*,\s*(?P<hi>{_NUM})\s*\])?[\s*_)]*$"
)


@dataclass(frozen=True)
class Quote:
    """One quoted number: where it is, its comment's words and the text it quotes."""

    file: str
    line: int
    spec: tuple[str, ...]
    text: str  # the quoted number, as written ("" when none precedes the comment)

    def where(self) -> str:
        return f"{self.file}:{self.line}: <!-- q:{' '.join(self.spec)} -->"


def _scan(text: str):
    """Each ``<!-- q: ... -->`` outside code: (line index, its comment's words, the match of the number
    before it or None, that match's offset in the line). Inline code is blanked to spaces of the same
    length, so the offsets index the original line."""
    fenced = False
    for i, line in enumerate(text.split("\n")):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:  # code shows the syntax; it quotes nothing
            continue
        masked = _INLINE_CODE.sub(lambda m: " " * len(m.group()), line)
        prev = 0
        for m in _COMMENT.finditer(masked):
            start, before = prev, masked[prev : m.start()]
            prev = m.end()
            try:
                spec = tuple(shlex.split(m.group("spec")))
            except ValueError:
                spec = (m.group("spec").strip(),)
            yield i, spec, _QUOTED.search(before), start


def find_quotes(text: str, file: str = "<text>") -> list[Quote]:
    """Every ``<!-- q: ... -->`` of a Markdown text, with the number written just before it (comments
    inside code, fenced or inline, show the syntax and are skipped)."""
    return [Quote(file, i + 1, spec, q.group(0).strip() if q else "") for i, spec, q, _ in _scan(text)]


def _row(spec: tuple[str, ...], results: Path) -> tuple[pd.Series, dict]:
    if len(spec) < 2:
        raise ValueError("expected 'STUDY SELECTION METHOD METRIC FIELD' or 'STUDY rho METHOD STATISTIC'")
    study = results / spec[0]
    if spec[1] == "rho":
        if len(spec) not in (4, 5):
            raise ValueError("expected 'STUDY rho METHOD STATISTIC [FIELD]'")
        table, keys, field = (
            pd.read_csv(study / "correlation.csv"),
            {"loss": spec[2], "statistic": spec[3]},
            (spec[4] if len(spec) == 5 else "rho"),
        )
        fields = {**FIELDS, "n": (("n_seeds",), 1.0)}
    elif spec[1] == "over":
        if len(spec) != 6:
            raise ValueError("expected 'STUDY over SELECTION METHOD METRIC FIELD'")
        table = pd.read_csv(study / "over_backbones.csv")
        keys, field, fields = (
            dict(zip(("selection", "loss", "metric"), spec[2:5], strict=True)),
            spec[5],
            _OVER_FIELDS,
        )
    else:
        if len(spec) != 5:
            raise ValueError("expected 'STUDY SELECTION METHOD METRIC FIELD'")
        table = pd.read_csv(study / "summary.csv")
        keys, field, fields = (
            dict(zip(("selection", "loss", "metric"), spec[1:4], strict=True)),
            spec[4],
            FIELDS,
        )
    if field not in fields:
        raise ValueError(f"field {field!r}: expected one of {sorted(fields)}")
    mask = pd.Series(True, index=table.index)
    for col, value in keys.items():
        mask &= table[col].astype(str) == value
    rows = table[mask]
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} rows of {study.name} match {keys} (expected exactly one)")
    return rows.iloc[0], {"field": field, **dict(zip(("cols", "scale"), fields[field], strict=True))}


def _decimals(s: str) -> float:
    """Half a unit of the last digit quoted: the rounding a matching value may differ by."""
    body = s.rstrip("%").lstrip("+-−")
    mant, _, exp = body.lower().partition("e")
    dec = len(mant.split(".")[1]) if "." in mant else 0
    return 0.5 * 10.0 ** (-dec + (int(exp) if exp else 0))


def _value(s: str) -> float:
    return float(s.replace("−", "-").rstrip("%"))


def check_quote(q: Quote, results: str | Path) -> str | None:
    """None when the quote matches its table, else a one-line reason naming the file and line."""
    try:
        row, how = _row(q.spec, Path(results))
    except (OSError, ValueError, KeyError) as exc:
        return f"{q.where()}: {exc}"
    m = _QUOTED.search(q.text) if q.text else None
    if m is None:
        return f"{q.where()}: no number written just before the comment"
    cols, scale = how["cols"], how["scale"]
    texts = [m.group("x")] + ([m.group("lo"), m.group("hi")] if m.group("lo") else [])
    if len(texts) == 3 and len(cols) < 3:
        return f"{q.where()}: field {how['field']!r} has no interval, but one is quoted"
    for text, col in zip(texts, cols, strict=False):
        true = float(row[col])
        s = scale * (
            100.0 if text.endswith("%") and scale == 1.0 and how["field"] in ("mean", "rho") else 1.0
        )
        if not math.isfinite(true):
            return f"{q.where()}: {text} quoted, but {col} is empty (NaN) in the table"
        if m.group("cmp") and text is texts[0]:
            if not s * true < _value(text):
                return f"{q.where()}: '< {text}' quoted, but {col} = {s * true:.6g}"
            continue
        if abs(_value(text) - s * true) > _decimals(text) + 1e-9 * max(1.0, abs(s * true)):
            return f"{q.where()}: {text} quoted, but {col} = {s * true:.6g}"
    return None


def format_quote(spec: list[str], results: str | Path, digits: int = 2) -> str:
    """The quote text of ``spec`` (comment words) with its comment, for pasting into Markdown."""
    row, how = _row(tuple(spec), Path(results))
    cols, scale = how["cols"], how["scale"]
    vals = [scale * float(row[c]) for c in cols]
    if how["field"] in ("n", "n_paired"):
        body = f"{int(vals[0])}"
    elif how["field"] in ("p", "holm"):
        body = f"{vals[0]:.2g}"
    elif how["field"] == "mean":
        body = f"{vals[0]:.4f}" + (f" [{vals[1]:.4f}, {vals[2]:.4f}]" if math.isfinite(vals[1]) else "")
    else:
        sign = "+" if how["field"] == "diff" else ""
        digits = 3 if how["field"] == "rho" else digits
        fmt = f"{{:{sign}.{digits}f}}"
        body = fmt.format(vals[0]) + (
            f" [{fmt.format(vals[1])}, {fmt.format(vals[2])}]"
            if len(vals) == 3 and math.isfinite(vals[1])
            else ""
        )
    words = " ".join(shlex.quote(w) for w in spec)
    return f"{body} <!-- q: {words} -->"


def _render(old: str, value: float) -> str | None:
    """``value`` written like ``old``: its decimals, its sign style and minus sign, its percent sign."""
    body = old.rstrip("%").lstrip("+-−")
    if "e" in body.lower():
        return None
    dec = len(body.split(".")[1]) if "." in body else 0
    text = f"{abs(value):.{dec}f}"
    if float(text) == 0.0:
        value = 0.0
    minus = "−" if "−" in old else "-"
    sign = minus if value < 0 else ("+" if old[:1] == "+" or (old[:1] in "-−" and value > 0) else "")
    return sign + text + ("%" if old.endswith("%") else "")


def refresh_quotes(text: str, results: str | Path, file: str = "<text>") -> tuple[str, list[str]]:
    """``text`` with every quoted number that no longer matches its table rewritten from the table, and
    one line per change (``file:line: old -> new``). A ``< x`` quote or an unreadable source is left as
    it is and listed as ``not rewritten``."""
    lines, changes, edits = text.split("\n"), [], {}
    for i, spec, q, start in _scan(text):
        quote = Quote(file, i + 1, spec, q.group(0).strip() if q else "")
        if q is None or check_quote(quote, results) is None:
            continue
        try:
            row, how = _row(spec, Path(results))
        except (OSError, ValueError, KeyError) as exc:
            changes.append(f"{quote.where()}: not rewritten ({exc})")
            continue
        if q.group("cmp"):
            changes.append(f"{quote.where()}: not rewritten ('<' quote: {check_quote(quote, results)})")
            continue
        groups = ["x"] + (["lo", "hi"] if q.group("lo") else [])
        pct = how["field"] in ("mean", "rho")
        news = []
        for g, col in zip(groups, how["cols"], strict=False):
            old = q.group(g)
            s = how["scale"] * (100.0 if old.endswith("%") and how["scale"] == 1.0 and pct else 1.0)
            news.append((q.start(g) + start, q.end(g) + start, _render(old, s * float(row[col]))))
        if any(n is None for *_, n in news):
            changes.append(f"{quote.where()}: not rewritten (exponent notation)")
            continue
        edits.setdefault(i, []).extend(news)
        changes.append(f"{quote.where()}: {q.group(0).strip()} -> "
                       + _after(q, news, start, lines[i]))  # fmt: skip
    for i, line_edits in edits.items():
        line = lines[i]
        for a, b, new in sorted(line_edits, reverse=True):
            line = line[:a] + new + line[b:]
        lines[i] = line
    return "\n".join(lines), changes


def _after(q: re.Match, news: list, start: int, line: str) -> str:
    """The quote's text after its numbers are replaced (for the change list)."""
    a, b = q.start(0) + start, q.end(0) + start
    seg = line[a:b]
    for x, y, new in sorted(news, reverse=True):
        seg = seg[: x - a] + new + seg[y - a :]
    return seg.strip()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    if args and args[0] in ("--refresh", "--check"):
        if len(args) == 1:
            raise SystemExit(f"{args[0]} needs the Markdown files to go through, e.g. README.md docs/*.md")
        bad = 0
        for name in args[1:]:
            page = Path(name)
            text = page.read_text()
            if args[0] == "--check":
                errors = [e for q in find_quotes(text, name) if (e := check_quote(q, results))]
                for e in errors:
                    print(e)
                bad += len(errors)
                continue
            new, changes = refresh_quotes(text, results, name)
            for c in changes:
                print(c)
            if new != text:
                write_text(page, new)
            bad += sum("not rewritten" in c for c in changes)
        return 1 if bad else 0
    print(format_quote(args, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
