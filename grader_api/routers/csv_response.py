"""Routes that answer a CSV file: the response class, and their error answers documented as what
they are (JSON), not under the route's text/csv."""

from __future__ import annotations

from typing import Any

from fastapi.responses import PlainTextResponse


class CsvResponse(PlainTextResponse):
    media_type = "text/csv"  # documented as what it is, so clients and the schema agree


# Without `model`: with one, FastAPI would file the error answers under the route's text/csv.
CSV_ROUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
    for code, description in ((401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found"),
                              (409, "Conflict"), (422, "invalid request"))}
