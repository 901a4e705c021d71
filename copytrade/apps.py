from django.apps import AppConfig


class CopytradeConfig(AppConfig):
    name = "copytrade"
    verbose_name = "Copy trading"

    def ready(self):
        from copytrade import hooks  # noqa: F401  (connects the fan-out to the engine's commits)

    def book_problems(self) -> list[str]:
        """check_ledger's part for copy trading: copied orders carry no foreign-key constraints."""
        from accounts.selectors import dangling_references

        return dangling_references("copytrade_copiedorder", "copied order", [
            ("follow_id", "copytrade_follow", "id"), ("leader_execution_id", "matching_execution", "id"),
            ("order_id", "matching_order", "id")])
