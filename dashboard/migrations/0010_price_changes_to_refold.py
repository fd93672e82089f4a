from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0009_shadow_pairs_and_model_cost_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="PriceChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model_pattern", models.CharField(max_length=200)),
                ("effective_from", models.DateField()),
                ("changed_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
