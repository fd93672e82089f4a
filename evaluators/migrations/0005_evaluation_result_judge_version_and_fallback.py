from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("evaluators", "0004_judge_timeout_shorter_than_the_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationresult",
            name="judge_version",
            field=models.CharField(blank=True, db_default="", max_length=200),
        ),
        migrations.AddField(
            model_name="evaluationresult",
            name="judge_fallback",
            field=models.TextField(blank=True, db_default=""),
        ),
    ]
