from django.db import migrations


def add_instruments(apps, schema_editor):
    from matching.services import create_default_instruments

    create_default_instruments(apps.get_model("matching", "Instrument"))


class Migration(migrations.Migration):
    dependencies = [("matching", "0001_initial"), ("accounts", "0002_assets")]
    operations = [migrations.RunPython(add_instruments, migrations.RunPython.noop)]
