from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Matching"

    def ready(self):
        from matching import publish  # noqa: F401  (connects the channel-layer publisher to the engine)
