"""evaluators' writes: the face other apps, commands, tasks and tests import through.

Each write is a named service function that owns its transaction; it lives in the module
that has its one reason to change, and is re-exported here:

- ``configuration.py``: the admin's and the API's configuration writes (micro models with
  their evaluators, judges), validated like the admin.
- ``micro_models.py``: micro models as scheduling and feedback see them; a span naming one
  nobody configured registers it (``register_micro_model``, in one place).
- ``scheduling.py``: quiet traces -> durable job rows, under the scheduler's cursor.
- ``jobs.py``: claiming, running and finishing a job; sweeping jobs whose message was lost.
- ``feedback.py``: late ground truth and the LabelCheck verdicts it decides.
- ``backfill.py``: the scheduler's jobs for a past range, and re-running existing ones.
- ``results.py``: writing result rows, one verdict at a time or imported in bulk.

Other apps import these names from ``evaluators.services`` only (never the modules
above), so the modules can move without their callers noticing.
"""

from __future__ import annotations

from .backfill import BackfillPlan, backfill_evaluations
from .checks.verdicts import DEFAULT_THRESHOLDS
from .configuration import (
    MICRO_MODEL_FIELDS,
    create_micro_model,
    delete_judge,
    delete_micro_model,
    update_micro_model,
)
from .feedback import UnknownTarget, record_feedback
from .jobs import run_evaluation_job, sweep_evaluation_jobs, worker_token
from .micro_models import MODEL_BASED, inapplicable, register_micro_model
from .results import import_evaluation_results
from .scheduling import schedule_evaluations

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MICRO_MODEL_FIELDS",
    "MODEL_BASED",
    "BackfillPlan",
    "UnknownTarget",
    "backfill_evaluations",
    "create_micro_model",
    "delete_judge",
    "delete_micro_model",
    "import_evaluation_results",
    "inapplicable",
    "record_feedback",
    "register_micro_model",
    "run_evaluation_job",
    "schedule_evaluations",
    "sweep_evaluation_jobs",
    "update_micro_model",
    "worker_token",
]
