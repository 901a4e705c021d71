from django.db import migrations


def add_assets(apps, schema_editor):
    from accounts.services import create_default_assets

    create_default_assets(apps.get_model("accounts", "Asset"))


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(add_assets, migrations.RunPython.noop)]
