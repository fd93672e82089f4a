from django.db import migrations, models


class Migration(migrations.Migration):
    """What the fallback spent rescuing escalated traces, per fact and rollup row (the
    fallback economics). Existing rows read 0 / NULL until ``refresh_metrics --rebuild``."""

    dependencies = [("dashboard", "0005_decision_fact_index_for_span_search")]

    operations = [
        migrations.AddField(
            model_name="decisionfact",
            name="rescue_cost",
            field=models.FloatField(null=True),
        ),
        migrations.AddField(
            model_name="rollup",
            name="rescue_costed",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="rollup",
            name="rescue_cost_sum",
            field=models.FloatField(default=0.0),
        ),
        migrations.AddField(
            model_name="rollup",
            name="rescue_cost_sq_sum",
            field=models.FloatField(default=0.0),
        ),
    ]
