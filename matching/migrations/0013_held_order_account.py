# HeldOrder names the order's account, so that an account's open orders are found by an index
# instead of a walk through every order it ever placed. Existing rows take it from their order.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_hot_updates'),
        ('matching', '0012_command_id_blocks'),
    ]

    operations = [
        migrations.AddField(
            model_name='heldorder',
            name='account',
            field=models.ForeignKey(db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING,
                                    related_name='+', to='accounts.account'),
        ),
        migrations.RunSQL(
            "UPDATE matching_heldorder h SET account_id = o.account_id FROM matching_order o WHERE o.id = h.order_id",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name='heldorder',
            name='account',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING,
                                    related_name='+', to='accounts.account'),
        ),
        migrations.AddIndex(
            model_name='heldorder',
            index=models.Index(fields=['account', 'instrument'], name='held_order_by_account'),
        ),
    ]
