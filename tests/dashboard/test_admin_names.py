"""The admin speaks the product's names: plural "Alert deliveries", each micro model's
judges in its list, scores at three decimals, dates as on the dashboard, and a way back to
the dashboard."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from evaluators.models import EvaluationResult, EvaluatorConfig, Judge, MicroModel
from tracestore.services import create_project

pytestmark = pytest.mark.django_db


def test_the_admin_index_names_alert_deliveries_and_leads_back_to_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert ">Alert deliveries</a>" in html
    assert "Alert deliverys" not in html
    assert '<a href="/overview/">View site</a>' in html
    assert "microlens admin" in html


def test_the_micro_model_list_names_each_evaluator_and_its_judge(admin_client):
    project = create_project("p")
    model = MicroModel.objects.create(project_id=project.id, name="intent-mini")
    judge = Judge.objects.create(name="gpt-judge")
    EvaluatorConfig.objects.create(micro_model=model, evaluator="task_completion", judge=judge)
    EvaluatorConfig.objects.create(micro_model=model, evaluator="label_check", enabled=False)
    html = admin_client.get("/admin/evaluators/micromodel/").content.decode()
    assert "Evaluators (judge)" in html
    assert "label_check (local) off, task_completion (gpt-judge)" in html


def test_scores_show_three_decimals_and_dates_the_dashboards_format(admin_client):
    project = create_project("p")
    model = MicroModel.objects.create(project_id=project.id, name="intent-mini")
    EvaluationResult.objects.create(
        project_id=project.id,
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        span_start_time=datetime(2026, 12, 6, 14, 5, 9, tzinfo=UTC),
        micro_model=model,
        evaluator="task_completion",
        evaluator_version=1,
        score=2 / 3,
        passed=True,
        threshold=0.5,
        reason="",
        judge="local",
        latency_ms=1.0,
        sampling_probability=1.0,
    )
    html = admin_client.get("/admin/evaluators/evaluationresult/").content.decode()
    cells = re.findall(r'<td class="field-score_shown">([^<]*)</td>', html)
    assert cells == ["0.667"]
    assert "0.6666666666666666" not in html
    assert '<td class="field-span_start_time nowrap">2026-12-06 14:05:09</td>' in html
