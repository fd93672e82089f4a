"""Record in the migration state that the span table has no index of its own on project_id.

Migration 0003 rebuilt the table partitioned (``CREATE TABLE ... LIKE``), which does not
copy indexes, so the database has had none since; Django's state still listed the
foreign key's default index, and a later ``AlterField`` would have tried to drop an index
that does not exist. State only: nothing changes in the database.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracestore", "0006_drop_unused_span_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="span",
                    name="project",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="tracestore.project",
                    ),
                )
            ],
            database_operations=[],
        )
    ]
