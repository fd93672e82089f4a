"""Jobs keep their trace's cohort, so the evaluations still pending in a window are counted
per cohort value beside each eval fail rate; feedback is found by when it changed, so the
metric fold re-reads the expected labels of traces given feedback since its last run."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("evaluators", "0007_auto_registered_micro_models_choose_evaluators_per_span"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationjob",
            name="cohort",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddIndex(
            model_name="feedback",
            index=models.Index(fields=["updated_at"], name="feedback_updated_idx"),
        ),
    ]
