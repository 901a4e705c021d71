from django.db import migrations

BLOCK = 1000
TABLE = "accounts_ledgertransaction"

# Going back to single steps: the sequence first moves past the last block handed out, whose keys
# may be in use up to its start + BLOCK - 1 (as matching's 0008_id_blocks). Running engines keep the
# step they read (matching.persistence._id_step) and must be restarted.
PAST_THE_LAST_BLOCK = f"""
    SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), GREATEST(
        COALESCE((SELECT last_value FROM pg_sequences
                   WHERE schemaname || '.' || sequencename = pg_get_serial_sequence('{TABLE}', 'id')), 0) + {BLOCK} - 1,
        COALESCE((SELECT max(id) FROM {TABLE}), 0), 1))"""


class Migration(migrations.Migration):
    """The engine takes a ledger transaction's key before writing its batch (`persistence.next_ids_of`):
    stepping by a block, one nextval serves a thousand batches' transactions, where each batch asked
    the database for one."""

    dependencies = [("accounts", "0004_hot_updates")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {TABLE} ALTER COLUMN id SET INCREMENT BY {BLOCK}"],
            [PAST_THE_LAST_BLOCK, f"ALTER TABLE {TABLE} ALTER COLUMN id SET INCREMENT BY 1"],
        ),
    ]
