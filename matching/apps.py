from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Matching"

    def ready(self):
        import config.lookups  # noqa: F401  (registers field__any)
        from matching import publish  # noqa: F401  (connects the channel-layer publisher to the engine)
