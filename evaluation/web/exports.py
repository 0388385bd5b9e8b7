"""Tables the pages show, downloaded as CSV or JSON (``?format=csv`` / ``?format=json``).

The rows are the ones the page shows, with the same columns, so a download is what the
reader saw. CSV cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``
first) are prefixed with ``'``: descriptions and tokens are untrusted text.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import Response

from evaluation.web.common import WebError

FORMATS = ("csv", "json")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise WebError(422, f"format must be csv or json, not {fmt!r}")
    return fmt


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)  # a negative number stays a number
        except ValueError:
            return "'" + value
    return value


def table_response(rows: Iterable[Mapping[str, Any]], columns: list[str], fmt: str, name: str) -> Response:
    """``rows`` (dicts with at least ``columns``) as a CSV or JSON download named ``name``."""
    check_format(fmt)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "table"
    rows = [{c: row.get(c) for c in columns} for row in rows]
    if fmt == "json":
        body = json.dumps({"columns": columns, "rows": rows}, ensure_ascii=False, indent=1)
        media = "application/json"
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[c] is None else _cell(row[c]) for c in columns])
        body, media = out.getvalue(), "text/csv; charset=utf-8"
    headers = {"Content-Disposition": f'attachment; filename="{safe}.{fmt}"'}
    return Response(body, media_type=media, headers=headers)
