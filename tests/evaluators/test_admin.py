"""The evaluators' admin screens: configuration forms, read-only jobs and results, and a
judge whose API key is never stored or shown."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from evaluators.models import Judge, MicroModel
from evaluators.services import run_evaluation_job

from .conftest import Tenant, classifier_trace, configure, schedule_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client


def test_every_evaluators_screen_renders(admin_client: Client, tenant: Tenant) -> None:
    configure(tenant.project_id)
    tenant.store(classifier_trace(expected="billing"))
    for job_id in schedule_all().job_ids:
        run_evaluation_job(job_id)
    model = MicroModel.objects.get()

    for url in (
        "/admin/evaluators/micromodel/",
        "/admin/evaluators/micromodel/add/",
        f"/admin/evaluators/micromodel/{model.id}/change/",
        "/admin/evaluators/judge/add/",
        "/admin/evaluators/evaluationjob/",
        "/admin/evaluators/evaluationresult/",
        "/admin/evaluators/feedback/",
    ):
        assert admin_client.get(url).status_code == 200, url


def test_a_judge_names_the_variable_holding_its_key_never_the_key(
    admin_client: Client, settings
) -> None:
    settings.MICROLENS_JUDGE_API_KEY = "sk-very-secret"

    response = admin_client.post(
        "/admin/evaluators/judge/add/",
        {
            "name": "gpt",
            "kind": "openai-compatible",
            "base_url": "https://judge.example.com/v1",
            "model": "judge-large",
            "api_key_env": "MICROLENS_JUDGE_API_KEY",
            "timeout_seconds": "20",
            "concurrency": "2",
        },
    )

    assert response.status_code == 302
    judge = Judge.objects.get()
    assert "sk-very-secret" not in str(Judge.objects.values().get())
    page = admin_client.get(f"/admin/evaluators/judge/{judge.id}/change/").content.decode()
    assert "sk-very-secret" not in page
    assert "MICROLENS_JUDGE_API_KEY" in page
