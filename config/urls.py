from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("matching.api")),
    path("api/v1/", include("accounts.api")),
    path("api/v1/copytrade/", include("copytrade.api")),
    path("account/", include("accounts.urls")),
    path("admin/", admin.site.urls),
]
