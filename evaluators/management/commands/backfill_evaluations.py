from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

from evaluators.contracts import EVALUATORS
from evaluators.progress import ProgressBar
from evaluators.services import backfill_evaluations, run_evaluation_job, worker_token
from evaluators.tasks import dispatch


def _moment(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{value!r} is not a date or an ISO 8601 date-time")
        parsed = datetime(day.year, day.month, day.day)
    return make_aware(parsed) if is_naive(parsed) else parsed


class Command(BaseCommand):
    help = (
        "Create the evaluation jobs for the micro-model spans of traces that started in "
        "[--start, --end) (same sampling as the scheduler, no quiet rule, no hourly budget) "
        "and run them here (default) or on the workers (--dispatch). --rerun judges the "
        "existing ones again, after an evaluator, threshold or judge change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", required=True, type=_moment, help="e.g. 2026-11-01")
        parser.add_argument("--end", required=True, type=_moment, help="exclusive")
        parser.add_argument("--micro-model", help="only this micro model (its name)")
        parser.add_argument("--evaluator", choices=EVALUATORS, help="only this evaluator")
        parser.add_argument("--rerun", action="store_true", help="judge existing jobs again")
        parser.add_argument(
            "--dispatch", action="store_true", help="send the jobs to the Celery workers"
        )

    def handle(self, *args, **options) -> None:
        if options["end"] <= options["start"]:
            raise CommandError("--end must be after --start")
        self.stderr.ending = ""  # the bar writes its own line ends
        planning = ProgressBar(self.stderr, "traces", 0)
        plan = backfill_evaluations(
            start=options["start"],
            end=options["end"],
            micro_model=options["micro_model"],
            evaluator=options["evaluator"],
            rerun=options["rerun"],
            progress=planning.update,
        )
        job_ids = sorted(set(plan.created) | set(plan.rerun))
        self.stdout.write(
            f"traces: {plan.traces}, new jobs: {len(plan.created)}, "
            f"jobs to re-run: {len(plan.rerun)}"
        )
        if options["dispatch"]:
            sent = dispatch(job_ids)
            self.stdout.write(f"sent to the workers: {sent}")
            return
        bar = ProgressBar(self.stderr, "evaluations", len(job_ids))
        counts: dict[str, int] = {}
        token = worker_token()
        for done, job_id in enumerate(job_ids, start=1):
            outcome = run_evaluation_job(job_id, token=token)
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            bar.update(done)
        summary = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
        self.stdout.write(f"evaluated: {summary or 'nothing to do'}")
