"""The fallback's label on an escalated decision fact, and the rollup's paired counts of
who was right (micro model, fallback) on escalated decisions with an expected label: the
routing advice's accuracy gap. Existing rows get '' and 0 (database defaults, no rewrite
of the tables' rows); ``manage.py refresh_metrics --rebuild`` back-fills old traffic."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('dashboard', '0012_shadow_pair_rollup_filled_from_pairs'),
    ]

    operations = [
        migrations.AddField(
            model_name='decisionfact',
            name='fallback_label',
            field=models.TextField(db_default='', default=''),
        ),
        migrations.AddField(
            model_name='rollup',
            name='paired_both_right',
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='rollup',
            name='paired_fallback_right',
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='rollup',
            name='paired_micro_right',
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='rollup',
            name='paired_neither_right',
            field=models.IntegerField(db_default=0, default=0),
        ),
    ]
