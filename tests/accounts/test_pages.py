import pytest
from django.contrib.auth.models import User

from accounts.models import Balance

pytestmark = pytest.mark.django_db


def test_signup_logs_in_and_the_faucet_funds_the_new_account(client, reference_data):
    response = client.post("/account/signup/", {"username": "newbie", "password1": "a-long-passphrase-9",
                                                 "password2": "a-long-passphrase-9"})
    assert response.status_code == 302 and response["Location"] == "/account/"
    client.post("/account/faucet/", {"asset": "USDT"})
    user = User.objects.get(username="newbie")
    assert Balance.objects.get(account__user=user, asset_id="USDT").amount == 100_000
    page = client.get("/account/").content.decode()
    assert 'id="balances"' in page and "100000" in page and 'id="positions"' in page


@pytest.mark.parametrize("asset", ["DOGE", "US\x00DT", ""])
def test_the_faucet_refuses_an_unknown_asset_with_a_message(client, make_trader, asset):
    account = make_trader()
    client.force_login(account.user)
    response = client.post("/account/faucet/", {"asset": asset}, follow=True)
    assert "Choose an asset" in response.content.decode()


def test_the_faucet_says_how_much_it_added_in_plain_digits(client, make_trader):
    client.force_login(make_trader(usdt="0", xbt="0").user)
    page = client.post("/account/faucet/", {"asset": "USDT"}, follow=True).content.decode()
    assert "100000 USDT added to your wallet" in page


def test_the_account_page_needs_a_login(client):
    response = client.get("/account/")
    assert response.status_code == 302 and "/account/login/" in response["Location"]


def test_the_home_page_shows_every_market(client, reference_data):
    page = client.get("/").content.decode()
    for symbol in ("XBTUSD", "XBTUSDT", "ETHUSDT"):
        assert f'id="market-{symbol}"' in page


def test_staff_deposit_and_withdraw_through_the_admin_and_it_is_ledgered(admin_client, make_trader):
    from accounts.models import CashMovement, LedgerEntry

    account = make_trader(usdt="0", xbt="0")
    response = admin_client.post("/admin/accounts/cashmovement/add/",
                                 {"kind": "deposit", "account": account.pk, "asset": "USDT", "amount": "250"})
    assert response.status_code == 302
    assert Balance.objects.get(account=account, asset_id="USDT").amount == 250
    movement = CashMovement.objects.get(account=account)
    assert LedgerEntry.objects.filter(transaction=movement.transaction).count() == 2
    too_much = admin_client.post("/admin/accounts/cashmovement/add/",
                                 {"kind": "withdrawal", "account": account.pk, "asset": "USDT", "amount": "251"},
                                 follow=True)
    assert "insufficient Available Balance" in too_much.content.decode()
    assert Balance.objects.get(account=account, asset_id="USDT").amount == 250


@pytest.mark.parametrize("amount, message", [
    ("1e22", "amount is too large"),  # fits the column, not the ledger's exact sums
    ("1e30", "no more than 28 digits before the decimal point"),  # the form field's own check
])
def test_an_admin_amount_too_large_to_hold_is_a_form_error(admin_client, make_trader, amount, message):
    from accounts.models import CashMovement

    account = make_trader(usdt="0", xbt="0")
    response = admin_client.post("/admin/accounts/cashmovement/add/",
                                 {"kind": "deposit", "account": account.pk, "asset": "USDT", "amount": amount})
    assert response.status_code == 200 and message in response.content.decode()
    assert not CashMovement.objects.filter(account=account).exists()
