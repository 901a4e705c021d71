# Positions lose their foreign-key constraints, as orders and executions did (see the model).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_hot_updates'),
        ('matching', '0009_time_ordered_ids'),
    ]

    operations = [
        migrations.AlterField(
            model_name='position',
            name='account',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='positions', to='accounts.account'),
        ),
        migrations.AlterField(
            model_name='position',
            name='instrument',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name='positions', to='matching.instrument'),
        ),
    ]
