from django.core.management.base import BaseCommand

from matching.services import create_default_instruments


class Command(BaseCommand):
    help = "Creates or updates the default perpetual instruments (XBTUSD, XBTUSDT, ETHUSDT)."

    def handle(self, *args, **options):
        for instrument in create_default_instruments():
            self.stdout.write(f"{instrument.symbol}: {'inverse' if instrument.is_inverse else 'linear'}, "
                              f"settled in {instrument.settle_asset_id}")
