from django.apps import AppConfig


class CopytradeConfig(AppConfig):
    name = "copytrade"
    verbose_name = "Copy trading"

    def ready(self):
        from copytrade import hooks  # noqa: F401  (connects the fan-out to the engine's commits)
