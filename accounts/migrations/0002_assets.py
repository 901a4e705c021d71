from django.db import migrations

ASSETS = [
    # code, name, decimal places of the smallest unit, BitMEX wallet currency id
    ("XBT", "Bitcoin", 8, "XBt"),
    ("USDT", "Tether USD", 6, "USDt"),
    ("USDC", "USD Coin", 6, "USDc"),
    ("ETH", "Ether", 9, "Gwei"),
]


def add_assets(apps, schema_editor):
    Asset = apps.get_model("accounts", "Asset")
    for code, name, scale, currency in ASSETS:
        Asset.objects.update_or_create(code=code, defaults={"name": name, "scale": scale, "currency": currency})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(add_assets, migrations.RunPython.noop)]
