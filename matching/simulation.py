"""Simulated traders for the demo: a market maker per symbol quoting around a random walk, and
takers that hit it. They trade through the same services as everyone else."""
import random
import time
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model

from accounts.models import Account
from accounts.services import deposit, main_account
from matching import services
from matching.models import HELD_STATUSES, Instrument, Order, Position

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


def copy_traders(*, leaders: int, followers: int, rng: random.Random) -> list[Account]:
    """Demo leaders (whales) and followers copying them with a spread of settings; returns the leaders' accounts."""
    from copytrade import services as copytrade
    from copytrade.models import Follow, Leader

    whales = []
    for i in range(1, leaders + 1):
        account = demo_account(f"whale{i}")
        if not Leader.objects.filter(user=account.user).exists():
            copytrade.apply_to_lead(user=account.user, display_name=f"Whale {i}", tags=["demo", "momentum"],
                                    description="A simulated trader: momentum entries, partial exits.",
                                    profit_share_rate=Decimal("0.10") + Decimal(i) / 100)
        whales.append(account)
    for j in range(1, followers + 1):
        account = demo_account(f"copier{j}")
        if not Follow.objects.filter(follower=account.user).exclude(status=Follow.Status.STOPPED).exists():
            leader = Leader.objects.get(user=whales[(j - 1) % len(whales)].user)
            copytrade.follow(user=account.user, leader=leader, amount=Decimal(rng.choice([5000, 20000, 100000])),
                             slippage=Decimal("0.01"), sizing=rng.choice(["proportional", "proportional", "fixed_ratio"]),
                             ratio=Decimal("0.05"))
    return whales


class Market:
    def __init__(self, instrument: Instrument, maker: Account, takers: list[Account], rng: random.Random,
                 whales: list[Account] = ()):
        self.instrument = instrument
        self.maker = maker
        self.takers = takers
        self.whales = list(whales)
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
            account=self.maker, held__instrument=self.instrument, ord_status__in=HELD_STATUSES).order_by("-pk")
        stale = list(resting[20:100])  # keep the latest quotes, pull the older ones
        if stale:
            services.cancel_orders(orders=stale, wait=0)
        for level in range(3):
            offset = spread + self.instrument.tick_size * level * 2
            for side, price in (("Buy", self.mid - offset), ("Sell", self.mid + offset)):
                self.submit(self.maker, side=side, order_qty=self.lots(200, 3000), price=self.tick_price(price))
        taker = self.rng.choice(self.takers)
        if self.rng.random() < 0.6:
            self.submit(taker, side=self.rng.choice(["Buy", "Sell"]), order_qty=self.lots(1, 8), ord_type="Market")
        if self.whales and self.rng.random() < 0.15:
            self.whale_trade(self.rng.choice(self.whales))

    def whale_trade(self, whale: Account) -> None:
        """Opens in a random direction, then takes profit or cuts in parts, so copies open and close."""
        held = Position.objects.filter(account=whale, instrument=self.instrument).values_list(
            "current_qty", flat=True).first() or 0
        if held and self.rng.random() < 0.6:
            part = max(abs(held) // self.instrument.lot_size // self.rng.choice([1, 2, 3]), 1) * self.instrument.lot_size
            self.submit(whale, side="Sell" if held > 0 else "Buy", order_qty=part, ord_type="Market",
                        exec_inst="ReduceOnly")
        else:
            self.submit(whale, side=self.rng.choice(["Buy", "Sell"]), order_qty=self.lots(300, 1500), ord_type="Market")

    def submit(self, account: Account, **order) -> None:
        try:
            services.submit_order(account=account, symbol=self.instrument.symbol, wait=0, **order)
        except ValueError:  # refused (no market price yet, margin): a real trader would try again later
            pass


def run(*, takers: int = 5, leaders: int = 3, followers: int = 12, interval: float = 0.5, steps: int | None = None,
        seed: int | None = None) -> None:
    rng = random.Random(seed)
    maker = demo_account("market-maker")
    traders = [demo_account(f"trader{i}") for i in range(1, takers + 1)]
    whales = copy_traders(leaders=leaders, followers=followers, rng=rng)
    markets = [Market(i, maker, traders, rng, whales if i.settle_asset_id == "USDT" else ())
               for i in Instrument.objects.select_related("settle_asset").filter(state="Open").order_by("symbol")]
    done = 0
    while steps is None or done < steps:
        for market in markets:
            market.step()
        done += 1
        time.sleep(interval)
