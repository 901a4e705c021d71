from django.db import migrations

BLOCK = 1000
TABLES = ("matching_execution", "matching_order")

# Going back to single steps: the sequence first moves past the last block handed out, whose keys
# may be in use up to its start + BLOCK - 1. Running engines and workers keep the step they read
# (matching.persistence._id_step) and must be restarted.
PAST_THE_LAST_BLOCK = """
    SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(
        COALESCE((SELECT last_value FROM pg_sequences
                   WHERE schemaname || '.' || sequencename = pg_get_serial_sequence('{table}', 'id')), 0) + {block} - 1,
        COALESCE((SELECT max(id) FROM {table}), 0), 1))"""


class Migration(migrations.Migration):
    """Executions and orders are written in bulk with keys taken beforehand (`persistence.next_ids`):
    their sequences step by a block, so one nextval reserves a thousand keys."""

    dependencies = [("matching", "0007_fan_out_constraints")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} ALTER COLUMN id SET INCREMENT BY {BLOCK}" for table in TABLES],
            [sql for table in TABLES for sql in (PAST_THE_LAST_BLOCK.format(table=table, block=BLOCK),
                                                 f"ALTER TABLE {table} ALTER COLUMN id SET INCREMENT BY 1")],
        ),
    ]
