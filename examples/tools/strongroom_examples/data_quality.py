"""The tools of the data-quality pipeline (``examples/registry/data-quality-tools.yaml``).

Each tool takes the JSON object the runner validated against its request schema and returns
a JSON object that matches its response schema. Every output is a pure function of the input
(and, for ``load_csv``, of the file's bytes): no timestamps, no randomness, sorted keys where
order is not given by the input, so a rerun of a step gives the same bytes.

* ``load_csv``: CSV file (relative to the working directory) -> records of strings.
* ``normalise_records``: trim and case-fold text, parse amounts, dates and ids (A1: a draft).
* ``run_quality_checks``: ``not_null``, ``unique``, ``range``, ``email`` and ``date`` rules.
* ``build_report``: failure counts per rule and a pass rate.
* ``export_dataset``: write ``out/clean.jsonl`` or ``out/clean.csv`` atomically.

Errors are ``ValueError`` with a message that names the input at fault.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
import unicodedata
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

__all__ = [
    "build_report",
    "export_dataset",
    "load_csv",
    "normalise_records",
    "run_quality_checks",
]

JsonObject = dict[str, Any]

OUTPUT_DIR = "out"
RULE_KINDS = ("not_null", "unique", "range", "email", "date")


# -- load_csv ----------------------------------------------------------------------------------


def load_csv(request: JsonObject) -> JsonObject:
    """Read ``path`` (UTF-8, optional BOM) split on ``delimiter`` (default ``,``).

    The first row names the columns (trimmed); every other non-blank line becomes a record
    mapping each column to its raw string. A short row is padded with empty strings; a row
    with more fields than the header is an error, as are a missing file and an empty header.
    """
    path = _require_str(request, "path")
    delimiter = request.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise ValueError(
            f"delimiter must be one character other than a quote or newline, got {delimiter!r}"
        )
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            raise ValueError(f"{path}: empty header: the first line must name the columns")
        columns = [name.strip() for name in header]
        for position, name in enumerate(columns, start=1):
            if not name:
                raise ValueError(f"{path}: column {position} of the header has no name")
        duplicates = sorted(name for name, n in Counter(columns).items() if n > 1)
        if duplicates:
            raise ValueError(
                f"{path}: duplicate column names in the header: {', '.join(duplicates)}"
            )
        records: list[JsonObject] = []
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) > len(columns):
                raise ValueError(
                    f"{path}: line {reader.line_num} has {len(row)} fields, "
                    f"the header names {len(columns)}"
                )
            row = row + [""] * (len(columns) - len(row))
            records.append(dict(zip(columns, row, strict=True)))
    except csv.Error as exc:
        raise ValueError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from None
    return {"records": records, "row_count": len(records), "columns": columns}


def _read_text(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"input path is a folder, not a file: {path}") from None
    except PermissionError:
        raise ValueError(
            f"cannot read {path}: permission denied (is it under the policy's read_paths?)"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None


# -- normalise_records -------------------------------------------------------------------------

# Languages whose decimal separator is a comma (de-CH included, as in "1.234,50"); any other
# language (en, ja, zh, ...) uses a point. Apostrophes are thousands separators everywhere.
_DECIMAL_COMMA_LANGUAGES = frozenset(
    {"de", "fr", "it", "es", "nl", "pt", "da", "sv", "nb", "nn", "no", "fi", "pl", "cs", "ru", "tr"}
)
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_CURRENCY = r"(?:[A-Z]{3}|S?Fr\.|[$€£¥])"
_AMOUNT = re.compile(
    rf"^(?P<sign>[-+−]?)\s*(?:{_CURRENCY}\s*)?(?P<sign2>[-+−]?)"
    rf"(?P<body>\d[\d.,'’\s]*?)\s*(?:{_CURRENCY})?$"
)
_GROUPING = re.compile(r"['’\s]")
_INTEGER = re.compile(r"^[-+]?\d+$")

_MONTH_NAMES = (
    ("january", "jan", "januar", "jänner", "jän"),
    ("february", "feb", "februar"),
    ("march", "mar", "märz", "mär", "maerz"),
    ("april", "apr"),
    ("may", "mai"),
    ("june", "jun", "juni"),
    ("july", "jul", "juli"),
    ("august", "aug"),
    ("september", "sep", "sept"),
    ("october", "oct", "oktober", "okt"),
    ("november", "nov"),
    ("december", "dec", "dezember", "dez"),
)
_MONTHS = {name: n for n, names in enumerate(_MONTH_NAMES, start=1) for name in names}
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
_ISO_DATE = re.compile(rf"^(\d{{4}})-(\d{{1,2}})-(\d{{1,2}}){_TIME}$")
_YMD = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})$")
_DOTTED_DMY = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_SLASHED = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DAY_MONTH_NAME = re.compile(r"^(\d{1,2})\.?\s+([^\W\d_]+)\.?,?\s+(\d{4})$")
_MONTH_NAME_DAY = re.compile(r"^([^\W\d_]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$")


def normalise_records(request: JsonObject) -> JsonObject:
    """Clean each record's fields, by field name, for ``locale`` (default ``en``).

    Every string is Unicode-NFC-normalised, trimmed, its inner runs of whitespace collapsed to
    one space; a blank string becomes ``null``. Then, by field name:

    * ``id``, ``*_id``: an integer when the text is one;
    * ``email``, ``*_email``: case-folded;
    * ``country``, ``country_code``, ``*_country``: upper case;
    * ``amount``, ``*_amount``, ``price``, ``total``: a number. With both ``.`` and ``,`` the
      last one is the decimal separator; a lone separator is the locale's decimal separator,
      or a thousands separator if it is the other one and three digits follow it
      ("1,234.50" and "1.234,50" are 1234.5 in any locale; "12,50" is 12.5 everywhere;
      "1,250" is 1250 in ``en`` but 1.25 in ``de-CH``); apostrophes group thousands
      ("1'234.50") and a currency code or sign is dropped ("CHF 89.90");
    * ``date``, ``*_date``, ``*_on``: an ISO-8601 date (``YYYY-MM-DD``) from ``YYYY-MM-DD``
      (a time part is dropped), ``YYYY/MM/DD``, ``YYYYMMDD``, ``DD.MM.YYYY``,
      ``15 Mar 2024``, ``March 15, 2024`` (English or German month names) and
      ``A/B/YYYY``: month first for ``en``/``en-US``, day first for every other locale,
      unless one of the two is above 12.

    A value that does not parse is left as (trimmed) text for the quality checks to flag.
    ``changes`` counts the fields whose value changed. Normalising the output again changes
    nothing.
    """
    records = _require_records(request)
    locale = request.get("locale", "en")
    if not isinstance(locale, str) or not _LOCALE.match(locale):
        raise ValueError(f"locale must look like 'en' or 'de-CH', got {locale!r}")
    parts = re.split(r"[-_]", locale.lower())
    decimal = "," if parts[0] in _DECIMAL_COMMA_LANGUAGES else "."
    month_first = parts[0] == "en" and (len(parts) == 1 or parts[1] == "us")

    changes = 0
    cleaned: list[JsonObject] = []
    for record in records:
        out: JsonObject = {}
        for field, value in record.items():
            new = _normalise_value(str(field), value, decimal=decimal, month_first=month_first)
            if type(new) is not type(value) or new != value:
                changes += 1
            out[field] = new
        cleaned.append(out)
    return {"records": cleaned, "changes": changes}


def _normalise_value(field: str, value: Any, *, decimal: str, month_first: bool) -> Any:
    if not isinstance(value, str):
        return value
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        return None
    name = field.strip().lower()
    if name == "id" or name.endswith("_id"):
        return int(text) if _INTEGER.match(text) else text
    if name == "email" or name.endswith("_email"):
        return text.casefold()
    if name in ("country", "country_code") or name.endswith("_country"):
        return text.upper()
    if name in ("amount", "price", "total") or name.endswith("_amount"):
        amount = parse_amount(text, decimal=decimal)
        return text if amount is None else amount
    if name == "date" or name.endswith(("_date", "_on")):
        parsed = parse_date(text, month_first=month_first)
        return text if parsed is None else parsed.isoformat()
    return text


def parse_amount(text: str, *, decimal: str = ".") -> float | None:
    """The number ``text`` writes, read with ``decimal`` as the locale's decimal separator
    (see `normalise_records`); None when it is not an amount."""
    match = _AMOUNT.match(text.strip())
    if match is None or (match["sign"] and match["sign2"]):
        return None
    negative = (match["sign"] or match["sign2"]) in ("-", "−")
    body = _GROUPING.sub("", match["body"])
    if not re.fullmatch(r"\d+(?:[.,]\d+)*", body):
        return None
    separators = [c for c in body if c in ".,"]
    groups = re.split(r"[.,]", body)
    if not separators:
        whole, fraction = body, ""
    else:
        last = separators[-1]
        if len(set(separators)) == 2:
            point = last  # both kinds: the last one is the decimal separator
        elif len(separators) > 1:
            point = ""  # one kind, repeated: thousands separators only
        elif last == decimal:
            point = last
        else:
            point = "" if len(groups[-1]) == 3 else last
        if point:
            if separators.count(point) != 1:
                return None
            whole, fraction = body.rsplit(point, 1)
        else:
            whole, fraction = body, ""
        thousands = re.split(r"[.,]", whole)
        if len(thousands) > 1 and (
            not 1 <= len(thousands[0]) <= 3 or any(len(g) != 3 for g in thousands[1:])
        ):
            return None
        whole = "".join(thousands)
    value = float(f"{whole}.{fraction or '0'}")
    if not math.isfinite(value):
        return None
    return -value if negative and value else value


def parse_date(text: str, *, month_first: bool = True) -> date | None:
    """The calendar date ``text`` writes (see `normalise_records`); None if it is none."""
    text = text.strip()
    year = month = day = 0
    if m := _ISO_DATE.match(text) or _YMD.match(text) or _COMPACT.match(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _DOTTED_DMY.match(text):
        day, month, year = int(m[1]), int(m[2]), int(m[3])
    elif m := _SLASHED.match(text):
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        if a > 12 or (b <= 12 and not month_first):
            day, month = a, b
        else:
            month, day = a, b
    elif m := _DAY_MONTH_NAME.match(text):
        day, month, year = int(m[1]), _MONTHS.get(m[2].casefold(), 0), int(m[3])
    elif m := _MONTH_NAME_DAY.match(text):
        month, day, year = _MONTHS.get(m[1].casefold(), 0), int(m[2]), int(m[3])
    else:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


# -- run_quality_checks ------------------------------------------------------------------------

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_STRICT_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def run_quality_checks(request: JsonObject) -> JsonObject:
    """Check ``records`` against ``rules`` (default: none), in the order given.

    Rules (``kind:field[:args]``):

    * ``not_null:F``: F is present and neither null nor blank;
    * ``unique:F``: no two records share a value of F (each repeat is a failure; nulls are
      not compared);
    * ``range:F:MIN:MAX``: F is a number with MIN <= F <= MAX (an empty bound is open);
    * ``email:F``: F looks like an e-mail address (``local@domain.tld``);
    * ``date:F``: F is an ISO-8601 calendar date ``YYYY-MM-DD``.

    ``range``, ``email`` and ``date`` skip null values (that is ``not_null``'s job).
    ``failures`` lists ``{rule, row, detail}`` by rule, then by 0-based row; ``passed`` is
    true when there are none. An unknown or malformed rule is a ``ValueError``.
    """
    records = _require_records(request)
    rules = request.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise ValueError("rules must be a list of strings such as 'not_null:id'")
    checks = [_parse_rule(rule) for rule in rules]  # every rule is checked before any runs
    failures: list[JsonObject] = []
    for rule, (kind, field, bounds) in zip(rules, checks, strict=True):
        for row, detail in _check(kind, field, bounds, records):
            failures.append({"rule": rule, "row": row, "detail": detail})
    return {"passed": not failures, "failures": failures}


def _parse_rule(rule: str) -> tuple[str, str, tuple[float | None, float | None]]:
    parts = rule.split(":")
    kind = parts[0]
    if kind not in RULE_KINDS:
        raise ValueError(f"unknown rule {rule!r}: the kinds are {', '.join(RULE_KINDS)}")
    expected = 4 if kind == "range" else 2
    if len(parts) != expected or not parts[1]:
        usage = f"{kind}:FIELD:MIN:MAX" if kind == "range" else f"{kind}:FIELD"
        raise ValueError(f"malformed rule {rule!r}: expected {usage}")
    if kind != "range":
        return kind, parts[1], (None, None)
    try:
        low = float(parts[2]) if parts[2] else None
        high = float(parts[3]) if parts[3] else None
    except ValueError:
        raise ValueError(f"malformed rule {rule!r}: the bounds must be numbers") from None
    if low is None and high is None:
        raise ValueError(f"malformed rule {rule!r}: give at least one bound")
    if low is not None and high is not None and low > high:
        raise ValueError(f"malformed rule {rule!r}: the minimum is above the maximum")
    return kind, parts[1], (low, high)


def _check(
    kind: str, field: str, bounds: tuple[float | None, float | None], records: list[JsonObject]
) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    if kind == "unique":
        first_seen: dict[tuple[str, Any], int] = {}
        for row, record in enumerate(records):
            value = record.get(field)
            if _is_null(value):
                continue
            key = _unique_key(value)
            if key in first_seen:
                found.append(
                    (row, f"{field} {_show(value)} repeats the value of row {first_seen[key]}")
                )
            else:
                first_seen[key] = row
        return found
    for row, record in enumerate(records):
        value = record.get(field)
        if kind == "not_null":
            if field not in record:
                found.append((row, f"{field} is missing"))
            elif _is_null(value):
                found.append((row, f"{field} is empty"))
            continue
        if _is_null(value):
            continue
        if kind == "range":
            number = _as_number(value)
            low, high = bounds
            if number is None:
                found.append((row, f"{field} {_show(value)} is not a number"))
            elif (low is not None and number < low) or (high is not None and number > high):
                span = f"[{_show_bound(low)}, {_show_bound(high)}]"
                found.append((row, f"{field} {_show(value)} is outside {span}"))
        elif kind == "email":
            if not isinstance(value, str) or not _EMAIL.match(value):
                found.append((row, f"{field} {_show(value)} is not an e-mail address"))
        elif kind == "date":
            if not isinstance(value, str) or not _STRICT_ISO_DATE.match(value):
                found.append((row, f"{field} {_show(value)} is not an ISO-8601 date (YYYY-MM-DD)"))
            elif parse_date(value) is None:
                found.append((row, f"{field} {_show(value)} is not a calendar date"))
    return found


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+(?:\.\d+)?\s*", value):
        return float(value)
    return None


def _unique_key(value: Any) -> tuple[str, Any]:
    number = None if isinstance(value, str) else _as_number(value)
    if number is not None:
        return ("number", number)
    if isinstance(value, str):
        return ("text", value)
    return ("json", json.dumps(value, sort_keys=True))


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _show_bound(bound: float | None) -> str:
    if bound is None:
        return "…"
    return str(int(bound)) if bound.is_integer() else repr(bound)


# -- build_report ------------------------------------------------------------------------------


def build_report(request: JsonObject) -> JsonObject:
    """Summarise ``failures`` (as `run_quality_checks` returns them) over ``row_count`` rows.

    ``by_rule`` counts failures per rule (sorted by rule); ``failed_rows`` counts the rows with
    at least one failure and ``pass_rate`` is the share of rows without any (1.0 for no rows,
    rounded to 4 decimals). No timestamp: the same input gives the same report.
    """
    row_count = request.get("row_count")
    if not isinstance(row_count, int) or isinstance(row_count, bool) or row_count < 0:
        raise ValueError(f"row_count must be a non-negative integer, got {row_count!r}")
    failures = request.get("failures")
    if not isinstance(failures, list):
        raise ValueError("failures must be a list")
    by_rule: Counter[str] = Counter()
    rows: set[int] = set()
    for n, failure in enumerate(failures):
        if not isinstance(failure, dict):
            raise ValueError(f"failure {n} is not an object")
        rule, row = failure.get("rule"), failure.get("row")
        if not isinstance(rule, str) or not isinstance(row, int) or isinstance(row, bool):
            raise ValueError(f"failure {n} needs a string 'rule' and an integer 'row'")
        if not 0 <= row < row_count:
            raise ValueError(f"failure {n} names row {row}, outside the {row_count} rows")
        by_rule[rule] += 1
        rows.add(row)
    pass_rate = round((row_count - len(rows)) / row_count, 4) if row_count else 1.0
    return {
        "report": {
            "row_count": row_count,
            "failure_count": len(failures),
            "failed_rows": len(rows),
            "by_rule": dict(sorted(by_rule.items())),
            "pass_rate": pass_rate,
            "passed": not failures,
            "generated_by": "strongroom_examples.data_quality:build_report",
        }
    }


# -- export_dataset ----------------------------------------------------------------------------


def export_dataset(request: JsonObject) -> JsonObject:
    """Write ``records`` to ``out/clean.jsonl`` (one JSON object a line, sorted keys) or
    ``out/clean.csv`` (the sorted union of the keys as header; null is an empty field, lists
    and objects are JSON). The file is written to a temporary file in ``out/`` and renamed
    over the old one, so a reader never sees half a file."""
    records = _require_records(request)
    fmt = request.get("format")
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"format must be 'jsonl' or 'csv', got {fmt!r}")
    text = _render_jsonl(records) if fmt == "jsonl" else _render_csv(records)
    target = f"{OUTPUT_DIR}/clean.{fmt}"
    _write_atomically(Path(target), text)
    return {"path": target, "row_count": len(records)}


def _render_jsonl(records: list[JsonObject]) -> str:
    return "".join(
        json.dumps(
            record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        + "\n"
        for record in records
    )


def _render_csv(records: list[JsonObject]) -> str:
    columns = sorted({str(key) for record in records for key in record})
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    if columns:
        writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_field(record.get(column)) for column in columns])
    return buffer.getvalue()


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value, allow_nan=False)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _write_atomically(target: Path, text: str) -> None:
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"output folder {folder}/ does not exist in the working directory")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except PermissionError:
        raise ValueError(
            f"cannot write in {folder}/: permission denied (is it under the policy's write_paths?)"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- shared ------------------------------------------------------------------------------------


def _require_str(request: JsonObject, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _require_records(request: JsonObject) -> list[JsonObject]:
    records = request.get("records")
    if not isinstance(records, list):
        raise ValueError("records must be a list of objects")
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"record {n} is not an object")
    return records
