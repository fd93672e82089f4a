# Shadow pairs, and an index for a micro model's traces (threshold optimiser costs).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("dashboard", "0008_move_cohort_dimensions_to_tracestore"),
    ]

    operations = [
        migrations.CreateModel(
            name='ShadowPair',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('project_id', models.BigIntegerField()),
                ('trace_id', models.BinaryField(max_length=16)),
                ('span_id', models.BinaryField(max_length=8)),
                ('hour', models.DateTimeField()),
                ('start_time', models.DateTimeField()),
                ('micro_model', models.TextField()),
                ('shadow_model', models.TextField()),
                ('live_label', models.TextField(default='')),
                ('shadow_label', models.TextField(default='')),
                ('expected_label', models.TextField(default='')),
                ('cohort', models.JSONField(default=dict)),
            ],
        ),
        migrations.AddIndex(
            model_name='decisionfact',
            index=models.Index(condition=models.Q(('is_primary', True)), fields=['project_id', 'micro_model', '-start_time'], include=('is_fallback', 'cost'), name='decision_fact_model_idx'),
        ),
        migrations.AddIndex(
            model_name='shadowpair',
            index=models.Index(fields=['project_id', 'micro_model', 'start_time'], name='shadow_pair_model_idx'),
        ),
        migrations.AddConstraint(
            model_name='shadowpair',
            constraint=models.UniqueConstraint(fields=('project_id', 'trace_id', 'span_id'), name='shadow_pair_uniq'),
        ),
    ]
