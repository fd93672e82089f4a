"""Micro models and judges configured through the API (as in the admin): validated,
scoped to the caller's projects, and used by the scheduler as saved."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from evaluators.api import MicroModelConfigDetail, MicroModelConfigSerializer
from evaluators.contracts import GROUNDEDNESS, LABEL_CHECK, TASK_COMPLETION
from evaluators.models import EvaluationJob, Judge, MicroModel

from .conftest import Tenant, classifier_trace, schedule_all

pytestmark = pytest.mark.django_db

URL = "/api/v1/config/micro-models/"


def _create(client: APIClient, **body) -> dict:
    response = client.post(URL, {"name": "intent-mini", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_micro_model_is_created_with_the_three_evaluators_by_default(tenant: Tenant) -> None:
    body = _create(tenant.client(), micro_model_name="intent-mini", sample_rate=25)

    assert body["project_id"] == tenant.project_id
    assert body["sample_rate"] == 25
    assert body["auto_registered"] is False
    assert body["evaluators"] == [
        {"evaluator": TASK_COMPLETION, "enabled": True, "threshold": 0.5, "judge": None},
        {"evaluator": GROUNDEDNESS, "enabled": True, "threshold": 0.5, "judge": None},
        {"evaluator": LABEL_CHECK, "enabled": True, "threshold": 1.0, "judge": None},
    ]
    listed = tenant.client().get(URL).json()["results"]
    assert [m["name"] for m in listed] == ["intent-mini"]


def test_the_scheduler_runs_what_the_api_configured(tenant: Tenant) -> None:
    _create(
        tenant.client(),
        micro_model_name="intent-mini",
        task="generation",
        sample_rate=100,
        evaluators=[{"evaluator": TASK_COMPLETION, "threshold": 0.7}],
    )
    tenant.store(classifier_trace(expected="billing"))

    result = schedule_all()

    assert result.models_registered == 0
    jobs = EvaluationJob.objects.filter(id__in=result.job_ids)
    assert sorted(jobs.values_list("evaluator", flat=True)) == [TASK_COMPLETION]


def test_an_update_replaces_the_evaluators_and_keeps_the_rest(tenant: Tenant) -> None:
    client = tenant.client()
    created = _create(client, micro_model_name="intent-mini")

    response = client.patch(
        f"{URL}{created['id']}/",
        {
            "always_below_confidence": 0.6,
            "label_synonyms": {"billing": ["payments", "invoice"]},
            "evaluators": [
                {"evaluator": LABEL_CHECK, "threshold": 1.0},
                {"evaluator": GROUNDEDNESS, "enabled": False},
            ],
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["always_below_confidence"] == 0.6
    assert body["micro_model_name"] == "intent-mini"
    assert body["label_synonyms"] == {"billing": ["payments", "invoice"]}
    assert sorted((e["evaluator"], e["enabled"], e["threshold"]) for e in body["evaluators"]) == [
        (GROUNDEDNESS, False, 0.5),
        (LABEL_CHECK, True, 1.0),
    ]
    stored = MicroModel.objects.get(id=created["id"])
    assert sorted(stored.evaluators.values_list("evaluator", flat=True)) == [
        GROUNDEDNESS,
        LABEL_CHECK,
    ]


def test_an_auto_registered_micro_model_edited_through_the_api_is_no_longer_marked_so(
    tenant: Tenant,
) -> None:
    tenant.store(classifier_trace(micro_model="router-tiny"))
    assert schedule_all().models_registered == 1
    client = tenant.client()
    registered = client.get(URL).json()["results"][0]
    assert (registered["name"], registered["auto_registered"]) == ("router-tiny", True)

    response = client.patch(f"{URL}{registered['id']}/", {"sample_rate": 50}, format="json")

    assert response.json()["auto_registered"] is False
    assert response.json()["sample_rate"] == 50


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"sample_rate": 150}, "sample_rate: Ensure this value is less than or equal to 100.0."),
        ({"task": "poetry"}, 'task: "poetry" is not a valid choice.'),
        ({"label_synonyms": {"billing": "payments"}}, "label_synonyms: an object of label"),
        (
            {"evaluators": [{"evaluator": LABEL_CHECK}, {"evaluator": LABEL_CHECK}]},
            "evaluators: each evaluator at most once",
        ),
        (
            {"evaluators": [{"evaluator": LABEL_CHECK, "judge": "nobody"}]},
            "evaluators.0.judge: Object with name=nobody does not exist.",
        ),
        (
            {"evaluators": [{"evaluator": LABEL_CHECK, "threshold": 2}]},
            "evaluators.0.threshold: Ensure this value is less than or equal to 1.0.",
        ),
    ],
)
def test_bad_configuration_is_a_400_that_says_why(tenant: Tenant, body, message) -> None:
    response = tenant.client().post(URL, {"name": "intent-mini", **body}, format="json")

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not MicroModel.objects.exists()


def test_a_name_is_unique_per_project(tenant: Tenant, other_tenant: Tenant) -> None:
    _create(tenant.client())
    again = tenant.client().post(URL, {"name": "intent-mini"}, format="json")
    elsewhere = other_tenant.client().post(URL, {"name": "intent-mini"}, format="json")

    assert again.status_code == 400
    assert again.json()["error"]["message"] == "name: this project has a micro model so named"
    assert elsewhere.status_code == 201


def test_another_projects_micro_model_is_not_found(tenant: Tenant, other_tenant: Tenant) -> None:
    created = _create(tenant.client())
    theirs = other_tenant.client()
    detail = f"{URL}{created['id']}/"

    assert theirs.get(URL).json()["results"] == []
    assert theirs.get(detail).status_code == 404
    assert theirs.patch(detail, {"sample_rate": 1}, format="json").status_code == 404
    assert theirs.delete(detail).status_code == 404
    forged = theirs.post(URL, {"name": "x", "project_id": tenant.project_id}, format="json")
    assert forged.status_code == 400
    assert forged.json()["error"]["message"] == "project_id: not one of your projects"
    assert MicroModel.objects.get(id=created["id"]).sample_rate == 10.0


def test_a_micro_model_is_deleted(tenant: Tenant) -> None:
    created = _create(tenant.client())

    assert tenant.client().delete(f"{URL}{created['id']}/").status_code == 204
    assert not MicroModel.objects.exists()


def test_judges_are_read_by_a_key_and_changed_by_staff_with_the_permission(
    tenant: Tenant,
) -> None:
    staff = get_user_model().objects.create_user("ops", password="pw-for-tests-1", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_judge", "delete_judge"])
    )
    admin_client = APIClient()
    admin_client.force_authenticate(staff)
    judge = {
        "name": "gpt-judge",
        "kind": "openai-compatible",
        "base_url": "https://llm.example.test/v1",
        "model": "judge-large",
        "api_key_env": "MICROLENS_JUDGE_GPT_KEY",
    }

    refused = tenant.client().post("/api/v1/config/judges/", judge, format="json")
    created = admin_client.post("/api/v1/config/judges/", judge, format="json")
    listed = tenant.client().get("/api/v1/config/judges/").json()["results"]

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "a project API key cannot change configuration shared by every project"
    )
    assert created.status_code == 201
    assert listed == [
        {
            "id": created.json()["id"],
            **judge,
            "timeout_seconds": 30.0,
            "concurrency": 4,
        }
    ]
    # A micro model's evaluator may use it; while it does, the judge cannot be deleted.
    _create(tenant.client(), evaluators=[{"evaluator": TASK_COMPLETION, "judge": "gpt-judge"}])
    in_use = admin_client.delete(f"/api/v1/config/judges/{created.json()['id']}/")
    assert in_use.status_code == 400
    assert Judge.objects.filter(name="gpt-judge").exists()


def test_a_judge_timeout_must_end_before_the_evaluation_lease(settings) -> None:
    settings.MICROLENS_EVAL_LEASE_SECONDS = 300
    staff = get_user_model().objects.create_user("ops", password="pw-for-tests-1", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="add_judge"))
    client = APIClient()
    client.force_authenticate(staff)
    judge = {"name": "slow", "kind": "openai-compatible", "model": "judge-large"}

    too_long = client.post("/api/v1/config/judges/", {**judge, "timeout_seconds": 300})
    within = client.post("/api/v1/config/judges/", {**judge, "timeout_seconds": 120})

    assert too_long.status_code == 400
    assert too_long.json()["error"]["message"] == (
        "timeout_seconds: must be shorter than the evaluation lease"
        " (300 s, MICROLENS_EVAL_LEASE_SECONDS)"
    )
    assert within.status_code == 201
    assert within.json()["timeout_seconds"] == 120.0


def test_an_update_without_the_micro_model_it_updates_is_refused_plainly() -> None:
    with pytest.raises(TypeError, match="bound to the micro model it updates, not None"):
        MicroModelConfigDetail().perform_update(MicroModelConfigSerializer())
