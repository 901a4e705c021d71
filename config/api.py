"""What every /api/v1 endpoint shares: BitMEX's error body and its query parameters."""
import json
from dataclasses import dataclass
from datetime import datetime

from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST


def error_body(message: str, name: str = "HTTPError") -> dict:
    return {"error": {"message": message, "name": name}}


def exception_handler(exc, context):
    """Every error as {"error": {"message", "name"}}, the body BitMEX clients parse; ValueError is a 400."""
    if isinstance(exc, ValueError):
        return Response(error_body(str(exc) or "Bad Request"), status=status.HTTP_400_BAD_REQUEST)
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
    if start < 0:
        raise BadRequest("start must be >= 0")
    raw_filter = params.get("filter") or "{}"
    try:
        parsed = json.loads(raw_filter)
    except json.JSONDecodeError:
        raise BadRequest("filter must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise BadRequest("filter must be a JSON object")
    reverse = str(params.get("reverse", "false")).lower()
    if reverse not in ("true", "false"):
        raise BadRequest("reverse must be true or false")
    return ListQuery(symbol=params.get("symbol") or None, filter=parsed, count=count, start=start,
                     reverse=reverse == "true", start_time=_time(params.get("startTime"), "startTime"),
                     end_time=_time(params.get("endTime"), "endTime"))
