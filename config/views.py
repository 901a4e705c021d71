"""Site-wide pages: the home page with the order book demo, and the health check."""
import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from matching.selectors import demo_book_depth, market_overview


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"markets": market_overview(), "book": demo_book_depth()})


def healthz(request: HttpRequest) -> JsonResponse:
    """Queries PostgreSQL and Redis for real; 503 with the error when either fails."""
    status = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        status["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure is the answer
        status["database"] = f"error: {type(error).__name__}"
    try:
        with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
        status["redis"] = "ok"
    except Exception as error:  # noqa: BLE001
        status["redis"] = f"error: {type(error).__name__}"
    healthy = all(value == "ok" for value in status.values())
    return JsonResponse(status, status=200 if healthy else 503)
