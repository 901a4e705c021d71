from django.db import migrations

BLOCK = 1000  # matching.persistence.ID_BLOCK when this was written; next_ids reads the step itself
TABLES = ("matching_execution", "matching_order")


class Migration(migrations.Migration):
    """Executions and orders are written in bulk with keys taken beforehand (`persistence.next_ids`):
    their sequences step by a block, so one nextval reserves a thousand keys."""

    dependencies = [("matching", "0007_fan_out_constraints")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} ALTER COLUMN id SET INCREMENT BY {BLOCK}" for table in TABLES],
            [f"ALTER TABLE {table} ALTER COLUMN id SET INCREMENT BY 1" for table in TABLES],
        ),
    ]
