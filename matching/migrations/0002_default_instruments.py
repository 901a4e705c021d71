from django.db import migrations


def add_instruments(apps, schema_editor):
    from matching.services import DEFAULT_INSTRUMENTS

    Instrument = apps.get_model("matching", "Instrument")
    for spec in DEFAULT_INSTRUMENTS:
        fields = dict(spec)
        Instrument.objects.update_or_create(symbol=fields.pop("symbol"), defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("matching", "0001_initial"), ("accounts", "0002_assets")]
    operations = [migrations.RunPython(add_instruments, migrations.RunPython.noop)]
