"""ASGI entry point: HTTP through Django, websockets through Channels under /realtime."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()  # sets Django up before anything imports models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

# Consumers of the realtime tables (orderBookL2, trade, order, execution, position, margin) go here.
realtime_urlpatterns: list = []

application = ProtocolTypeRouter(
    {
        # Daphne serves no files itself; the handler serves /static/ from the app and project folders.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("realtime", URLRouter(realtime_urlpatterns))]))
        ),
    }
)
