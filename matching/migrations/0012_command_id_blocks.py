import importlib

from django.db import migrations

id_blocks = importlib.import_module("matching.migrations.0008_id_blocks")
BLOCK, TABLE = id_blocks.BLOCK, "matching_ordercommand"


class Migration(migrations.Migration):
    """Cancels are stored by COPY with keys taken beforehand (`persistence.store_commands`): stepping
    by a block, one nextval serves many calls, where each call (a cancel-all, a chunk of the engine
    benchmark's orders) asked the database for its keys. Going back, the sequence first moves past
    the last block handed out (as 0008); running processes keep the step they read and must be
    restarted."""

    dependencies = [("matching", "0011_open_orders_apart")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {TABLE} ALTER COLUMN id SET INCREMENT BY {BLOCK}"],
            [id_blocks.PAST_THE_LAST_BLOCK.format(table=TABLE, block=BLOCK),
             f"ALTER TABLE {TABLE} ALTER COLUMN id SET INCREMENT BY 1"],
        ),
    ]
