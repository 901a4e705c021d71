"""The Django admin: staff credit and debit wallets through the same services as everyone, and read the ledger."""
from django import forms
from django.contrib import admin

from accounts import services
from accounts.models import Account, Balance, CashMovement, LedgerEntry


class CashMovementForm(forms.ModelForm):
    """Validating the form performs the movement, so a refusal (e.g. more than the available
    balance) shows as a form error and nothing is written."""

    class Meta:
        model = CashMovement
        fields = ["kind", "account", "asset", "amount"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        move = services.deposit if data["kind"] == CashMovement.Kind.DEPOSIT else services.withdraw
        try:
            self.movement = move(account=data["account"], asset=data["asset"], amount=data["amount"])
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return data


@admin.register(CashMovement)
class CashMovementAdmin(admin.ModelAdmin):
    """Deposits and withdrawals: adding one posts it to the ledger; nothing here edits or deletes."""

    form = CashMovementForm
    list_display = ["created_at", "kind", "account", "asset", "amount", "request_id"]
    list_filter = ["kind", "asset"]
    search_fields = ["account__user__username", "request_id"]

    def has_change_permission(self, request, obj=None):
        return obj is None

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.pk = form.movement.pk  # already stored by the service when the form was validated
        obj.refresh_from_db()


@admin.register(Balance)
class BalanceAdmin(admin.ModelAdmin):
    list_display = ["account", "asset", "amount", "order_margin", "position_margin"]
    list_filter = ["asset"]
    search_fields = ["account__user__username"]
    readonly_fields = ["account", "asset", "amount", "order_margin", "position_margin"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["id", "transaction_id", "account", "asset", "amount", "kind", "reference"]
    list_filter = ["kind", "asset"]
    search_fields = ["reference", "account__user__username"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.register(Account, list_display=["id", "user", "kind", "name", "created_at"], list_filter=["kind"])
