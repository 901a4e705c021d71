"""WSGI entry point, for plain HTTP servers; the site runs on ASGI (config.asgi) for websockets."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
