# Open orders are found through two small tables instead of partial indexes on ord_status, so
# that the engine's updates of orders are HOT (see the Order model); the public trades' index holds
# the taker's executions only. Run it with the engines and web processes stopped: an engine of the
# code before would rest orders without listing them, and its successor would not load them.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_hot_updates'),
        ('matching', '0010_position_without_constraints'),
    ]

    operations = [
        migrations.CreateModel(
            name='HeldOrder',
            fields=[
                ('order', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='held', serialize=False, to='matching.order')),
                ('side', models.CharField(choices=[('Buy', 'Buy'), ('Sell', 'Sell')], max_length=4)),
                ('price', models.DecimalField(blank=True, decimal_places=10, max_digits=30, null=True)),
                ('leaves_qty', models.BigIntegerField()),
                ('ord_status', models.CharField(choices=[('PendingNew', 'Pending New'), ('New', 'New'), ('PartiallyFilled', 'Partially Filled'), ('Filled', 'Filled'), ('Canceled', 'Canceled'), ('Rejected', 'Rejected'), ('Untriggered', 'Untriggered')], max_length=16)),
            ],
        ),
        migrations.CreateModel(
            name='PendingOrder',
            fields=[
                ('order', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='pending', serialize=False, to='matching.order')),
            ],
        ),
        migrations.RemoveIndex(
            model_name='execution',
            name='matching_ex_instrum_210cc0_idx',
        ),
        migrations.RemoveIndex(
            model_name='order',
            name='order_open_by_instrument',
        ),
        migrations.RemoveIndex(
            model_name='order',
            name='order_pending',
        ),
        migrations.AddIndex(
            model_name='execution',
            index=models.Index(condition=models.Q(('last_liquidity_ind', 'RemovedLiquidity')), fields=['instrument', '-id'], name='execution_public_trades'),
        ),
        migrations.AddField(
            model_name='heldorder',
            name='instrument',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='matching.instrument'),
        ),
        migrations.RunSQL(
            [
                # any insert of open orders (the ORM, COPY, a fixture) records them, once per statement
                """CREATE FUNCTION matching_order_record_open() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN
                     INSERT INTO matching_pendingorder (order_id)
                          SELECT id FROM inserted WHERE ord_status = 'PendingNew';
                     INSERT INTO matching_heldorder (order_id, instrument_id, side, price, leaves_qty, ord_status)
                          SELECT id, instrument_id, side, price, leaves_qty, ord_status FROM inserted
                           WHERE ord_status IN ('New', 'PartiallyFilled', 'Untriggered');
                     RETURN NULL;
                   END $$""",
                "CREATE TRIGGER matching_order_record_open AFTER INSERT ON matching_order "
                "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION matching_order_record_open()",
                # then the orders already there
                "INSERT INTO matching_pendingorder (order_id) SELECT id FROM matching_order WHERE ord_status = 'PendingNew' "
                "ON CONFLICT DO NOTHING",
                "INSERT INTO matching_heldorder (order_id, instrument_id, side, price, leaves_qty, ord_status) "
                "SELECT id, instrument_id, side, price, leaves_qty, ord_status FROM matching_order "
                "WHERE ord_status IN ('New', 'PartiallyFilled', 'Untriggered') ON CONFLICT DO NOTHING",
                # room on each page for an order's next version: an IOC order is written twice
                # (stored, then filled), a resting one a few times, and pruning frees old versions
                "ALTER TABLE matching_order SET (fillfactor = 50)",
                "ALTER TABLE matching_heldorder SET (fillfactor = 70)",  # a resting order's size changes
            ],
            [
                "ALTER TABLE matching_order RESET (fillfactor)",
                "DROP TRIGGER matching_order_record_open ON matching_order",
                "DROP FUNCTION matching_order_record_open()",
            ],
        ),
    ]
