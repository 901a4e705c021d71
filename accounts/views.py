"""Pages for signing up, logging in and checking your own account."""
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import selectors as account_selectors
from accounts import services
from accounts.models import Asset
from config.decimals import plain
from matching import selectors


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        services.main_account(user)
        login(request, user)
        messages.success(request, "Welcome! Take some demo money from the faucet to start trading.")
        return redirect("account")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    main = services.main_account(request.user)
    return render(request, "accounts/account.html", {
        "account": main,
        "balances": selectors.balances_for(account=main),
        "positions": [p for p in selectors.positions_for(account=main) if p.current_qty],
        "orders": selectors.open_orders_for(account=main),
        "executions": selectors.recent_executions_for(account=main),
        "assets": Asset.objects.order_by("code"),
    })


@login_required
@require_POST
def faucet(request: HttpRequest) -> HttpResponse:
    asset = account_selectors.asset_named(request.POST.get("asset"))
    if asset is None:
        messages.error(request, "Choose an asset.")
    else:
        try:
            movement = services.faucet_deposit(account=services.main_account(request.user), asset=asset)
            messages.success(request, f"{plain(movement.amount)} {asset.code} added to your wallet.")
        except ValueError as error:
            messages.error(request, str(error))
    return redirect("account")
