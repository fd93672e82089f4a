"""The evaluation rollup keeps the sums of w² (w = 1 / sampling probability) beside the
sums of w: the interval of a weighted fail rate and its effective n are computed from them.
Existing rows lack them, so they are dropped with the fold's watermark: the next fold
(one beat later) re-counts every hour that has results, whole."""

from django.db import migrations, models


def recount_from_scratch(apps, schema_editor):
    apps.get_model("dashboard", "EvalRollup").objects.all().delete()
    apps.get_model("dashboard", "RollupWatermark").objects.filter(name="evaluations").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0006_rollup_rescue_cost_of_escalated_traces"),
    ]

    operations = [
        migrations.AddField(
            model_name="evalrollup",
            name="weighted_sq_evaluated",
            field=models.FloatField(default=0.0),
        ),
        migrations.AddField(
            model_name="evalrollup",
            name="weighted_sq_failed",
            field=models.FloatField(default=0.0),
        ),
        migrations.RunPython(recount_from_scratch, migrations.RunPython.noop),
    ]
