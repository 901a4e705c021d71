"""What every /api/v1 endpoint shares: BitMEX's error body and its query parameters."""
import codecs
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import DataError
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response
from rest_framework.utils.json import strict_constant
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)
MAX_OFFSET = 2**63 - 1  # PostgreSQL's OFFSET is a bigint


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST


def error_body(message: str, name: str = "HTTPError") -> dict:
    return {"error": {"message": message, "name": name}}


def loads(text: str):
    """JSON with its numbers exact: a fraction becomes a Decimal, never a float. Too deep a nesting
    is a ValueError like any other malformed JSON."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=strict_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with exact numbers (`loads`)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return loads(codecs.getreader(encoding)(stream).read())
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def exception_handler(exc, context):
    """Every error as {"error": {"message", "name"}}, the body BitMEX clients parse. A ValueError is a
    400, and so is a value PostgreSQL refuses (a NUL character in a text, a number beyond its column):
    the refused statement wrote nothing, and the service's transaction around it rolled back. It is
    logged, as a value the API's own checks should have refused first."""
    if isinstance(exc, ValueError):
        return Response(error_body(str(exc) or "Bad Request"), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DataError):
        log.warning("request refused by the database: %s", exc)
        message = str(exc).splitlines()[0] if str(exc) else "a value the database cannot store"
        return Response(error_body(f"Invalid value: {message}"), status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(detail, dict):
        message = "; ".join(f"{field}: {' '.join(map(str, errors)) if isinstance(errors, list) else errors}"
                            for field, errors in detail.items())
    elif isinstance(detail, list):
        message = " ".join(map(str, detail))
    else:
        message = str(detail)
    name = "ValidationError" if response.status_code == 400 else "HTTPError"
    response.data = error_body(message, name)
    return response


def json_object(request, known=None) -> dict:
    """The request's body as a JSON object; with `known`, a field outside it is refused (a misspelt
    one would otherwise be ignored without a word)."""
    data = request.data
    if not hasattr(data, "get"):
        raise BadRequest("the body must be a JSON object")
    unknown = set(data) - set(known) if known is not None else ()
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(sorted(unknown))}")
    return data


@dataclass(frozen=True)
class ListQuery:
    """BitMEX's list parameters: symbol, filter, count, start, reverse, startTime, endTime."""

    symbol: str | None
    filter: dict
    count: int
    start: int
    reverse: bool
    start_time: datetime | None
    end_time: datetime | None


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    moment = parse_datetime(value.replace("Z", "+00:00"))
    if moment is None:
        raise BadRequest(f"Invalid {name}: expected an ISO-8601 time")
    return moment


def list_query(params, default_count: int = 100, max_count: int = 1000) -> ListQuery:
    try:
        count = int(params.get("count", default_count))
        start = int(params.get("start", 0))
    except ValueError:
        raise BadRequest("count and start must be integers") from None
    if not 1 <= count <= max_count:
        raise BadRequest(f"count must be between 1 and {max_count}")
    if not 0 <= start <= MAX_OFFSET:
        raise BadRequest(f"start must be between 0 and {MAX_OFFSET}")
    raw_filter = params.get("filter") or "{}"
    try:
        parsed = loads(raw_filter)
    except ValueError:
        raise BadRequest("filter must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise BadRequest("filter must be a JSON object")
    reverse = str(params.get("reverse", "false")).lower()
    if reverse not in ("true", "false"):
        raise BadRequest("reverse must be true or false")
    return ListQuery(symbol=params.get("symbol") or None, filter=parsed, count=count, start=start,
                     reverse=reverse == "true", start_time=_time(params.get("startTime"), "startTime"),
                     end_time=_time(params.get("endTime"), "endTime"))
