"""Simulated traders for the demo: a market maker per symbol quoting around a random walk, and
takers that hit it. They trade through the same services as everyone else."""
import random
import time
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model

from accounts.models import Account
from accounts.services import deposit, main_account
from matching import services
from matching.models import OPEN_STATUSES, Instrument, Order

START_PRICES = {"XBTUSD": Decimal(60000), "XBTUSDT": Decimal(60000), "ETHUSDT": Decimal(3000)}
FUNDING = {"XBT": Decimal(50), "USDT": Decimal(5_000_000), "ETH": Decimal(1000)}


def demo_account(username: str, password: str | None = None) -> Account:
    """A demo user's main account, funded once."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()  # simulated traders never log in
        user.save()
    account = main_account(user)
    if not account.cash_movements.exists():
        for asset, amount in FUNDING.items():
            deposit(account=account, asset=asset, amount=amount)
    return account


class Market:
    def __init__(self, instrument: Instrument, maker: Account, takers: list[Account], rng: random.Random):
        self.instrument = instrument
        self.maker = maker
        self.takers = takers
        self.rng = rng
        self.mid = instrument.last_price or START_PRICES.get(instrument.symbol, Decimal(1000))

    def tick_price(self, price: Decimal) -> Decimal:
        tick = self.instrument.tick_size
        return (price / tick).quantize(Decimal(1), ROUND_HALF_UP) * tick

    def lots(self, low: int, high: int) -> int:
        return self.rng.randint(low, high) * self.instrument.lot_size

    def step(self) -> None:
        self.mid = self.tick_price(self.mid * (1 + Decimal(self.rng.gauss(0, 0.0008))))
        spread = self.instrument.tick_size * self.rng.randint(1, 4)
        resting = Order.objects.select_related("instrument").filter(
            account=self.maker, instrument=self.instrument, ord_status__in=OPEN_STATUSES).order_by("-pk")
        stale = list(resting[20:100])  # keep the latest quotes, pull the older ones
        if stale:
            services.cancel_orders(orders=stale, wait=0)
        for level in range(3):
            offset = spread + self.instrument.tick_size * level * 2
            for side, price in (("Buy", self.mid - offset), ("Sell", self.mid + offset)):
                self.submit(self.maker, side=side, order_qty=self.lots(1, 20), price=self.tick_price(price))
        taker = self.rng.choice(self.takers)
        if self.rng.random() < 0.6:
            self.submit(taker, side=self.rng.choice(["Buy", "Sell"]), order_qty=self.lots(1, 8), ord_type="Market")

    def submit(self, account: Account, **order) -> None:
        try:
            services.submit_order(account=account, symbol=self.instrument.symbol, wait=0, **order)
        except ValueError:  # refused (no market price yet, margin): a real trader would try again later
            pass


def run(*, takers: int = 5, interval: float = 0.5, steps: int | None = None, seed: int | None = None) -> None:
    rng = random.Random(seed)
    maker = demo_account("market-maker")
    traders = [demo_account(f"trader{i}") for i in range(1, takers + 1)]
    markets = [Market(i, maker, traders, rng) for i in Instrument.objects.select_related("settle_asset")
               .filter(state="Open").order_by("symbol")]
    done = 0
    while steps is None or done < steps:
        for market in markets:
            market.step()
        done += 1
        time.sleep(interval)
