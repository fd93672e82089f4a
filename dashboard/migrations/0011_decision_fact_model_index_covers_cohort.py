"""The threshold optimiser's unit-cost read (newest primary facts of one micro model, with
their cohort) answered by an index-only scan: the index on (project, micro model,
start_time) also carries the cohort. Built concurrently before the old one is dropped, so
ingest is never blocked and the read never lacks an index."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("dashboard", "0010_price_changes_to_refold"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="decisionfact",
            index=models.Index(
                condition=models.Q(("is_primary", True)),
                fields=["project_id", "micro_model", "-start_time"],
                include=("is_fallback", "cost", "cohort"),
                name="decision_fact_model_cost_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="decisionfact", name="decision_fact_model_idx"),
    ]
