"""Micro models registered from traffic were given the task "classification" and every
evaluator on every sampled span: TaskCompletion and Groundedness judged label outputs. They
get the task "auto", which chooses the evaluators by what each span is. Micro models someone
edited (auto_registered cleared) keep the task they were given."""

from django.db import migrations, models


def auto_registered_to_auto(apps, schema_editor):
    MicroModel = apps.get_model("evaluators", "MicroModel")
    MicroModel.objects.filter(auto_registered=True, task="classification").update(task="auto")


def auto_back_to_classification(apps, schema_editor):
    MicroModel = apps.get_model("evaluators", "MicroModel")
    MicroModel.objects.filter(task="auto").update(task="classification")


class Migration(migrations.Migration):
    dependencies = [
        ("evaluators", "0006_judge_api_key_env_needs_microlens_judge_prefix"),
    ]

    operations = [
        migrations.AlterField(
            model_name="micromodel",
            name="task",
            field=models.CharField(
                choices=[
                    ("auto", "auto (by what each span is)"),
                    ("classification", "Classification"),
                    ("routing", "Routing"),
                    ("extraction", "Extraction"),
                    ("generation", "Generation"),
                    ("safety", "Safety"),
                ],
                default="classification",
                max_length=20,
            ),
        ),
        migrations.RunPython(auto_registered_to_auto, auto_back_to_classification),
    ]
