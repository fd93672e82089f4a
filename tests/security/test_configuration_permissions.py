"""Configuration permissions: who may change judges, micro models and alert rules through
the API (the admin's model permissions), which environment variable a judge may read its
key from (``MICROLENS_JUDGE_*`` only), and the audit log of every configuration change.

The attack this module defends against: a staff user with no permissions and no project
pointed the judge another project's micro model used at a listener and set its key
variable to one of the worker's (``DATABASE_URL``), receiving that project's span text and
the database password.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEntry
from audit.services import REDACTED, acting_as
from dashboard.alerts.models import AlertRule
from dashboard.models import ModelPrice
from evaluators.models import EvaluationJob, EvaluatorConfig, Judge, MicroModel
from evaluators.services import register_micro_model, run_evaluation_job
from tests.evaluators.conftest import Tenant, classifier_trace, configure, schedule_all
from tests.evaluators.judge_server import JudgeServer, judge_server, verdict
from tracestore.models import ApiKey, Project
from tracestore.services import create_project, issue_api_key, revoke_api_key

pytestmark = pytest.mark.django_db

JUDGES = "/api/v1/config/judges/"
MODELS = "/api/v1/config/micro-models/"
RULES = "/api/v1/alert-rules/"
PASSWORD = "pw-for-tests-1"

RULE = {
    "name": "billing recall",
    "metric": "label-recall",
    "micro_model": "intent-mini",
    "label": "billing",
    "comparator": "below",
    "threshold": 0.9,
    "window_seconds": 86400,
    "min_n": 20,
    "webhook_urls": [],
    "email_addresses": ["oncall@example.com"],
}


@dataclass
class World:
    project_id: int
    key: str
    judge: Judge
    micro_model: MicroModel
    rule: AlertRule

    def key_client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        return client


@pytest.fixture
def world() -> World:
    project = create_project("shop")
    judge = Judge.objects.create(
        name="shared",
        kind="openai-compatible",
        base_url="https://llm.example.test/v1",
        model="judge-large",
    )
    micro_model = configure(project.id, judge=judge)
    rule = AlertRule.objects.create(project_id=project.id, **{**RULE, "name": "existing"})
    return World(project.id, issue_api_key(project.id), judge, micro_model, rule)


def _user(name: str, *perms: str, staff: bool = True, project_id: int | None = None) -> Any:
    user = get_user_model().objects.create_user(name, password=PASSWORD, is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    if project_id is not None:
        Project.objects.get(pk=project_id).members.add(user)
    return get_user_model().objects.get(pk=user.pk)  # fresh: no cached permissions


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@dataclass(frozen=True)
class Write:
    """One write of one configuration endpoint, the permission it needs, and how to read
    back the state it would change."""

    name: str
    method: str
    url: Callable[[World], str]
    body: dict[str, Any] | None
    perm: str
    state: Callable[[World], Any]


def _judge_state(w: World) -> Any:
    return list(Judge.objects.order_by("id").values())


def _model_state(w: World) -> Any:
    return (
        list(MicroModel.objects.order_by("id").values()),
        list(EvaluatorConfig.objects.order_by("id").values()),
    )


def _rule_state(w: World) -> Any:
    return list(AlertRule.objects.order_by("id").values())


WRITES = [
    Write(
        "create judge",
        "post",
        lambda w: JUDGES,
        {"name": "new", "kind": "openai-compatible", "model": "m"},
        "evaluators.add_judge",
        _judge_state,
    ),
    Write(
        "repoint judge",
        "patch",
        lambda w: f"{JUDGES}{w.judge.id}/",
        {"base_url": "https://listener.example.test/v1", "api_key_env": "MICROLENS_JUDGE_X"},
        "evaluators.change_judge",
        _judge_state,
    ),
    Write(
        "replace judge",
        "put",
        lambda w: f"{JUDGES}{w.judge.id}/",
        {"name": "shared", "kind": "openai-compatible", "model": "other"},
        "evaluators.change_judge",
        _judge_state,
    ),
    Write(
        "delete judge",
        "delete",
        lambda w: f"{JUDGES}{Judge.objects.create(name='unused').id}/",
        None,
        "evaluators.delete_judge",
        _judge_state,
    ),
    Write(
        "create micro model",
        "post",
        lambda w: MODELS,
        {"name": "router-mini"},
        "evaluators.add_micromodel",
        _model_state,
    ),
    Write(
        "change micro model",
        "patch",
        lambda w: f"{MODELS}{w.micro_model.id}/",
        {"sample_rate": 50},
        "evaluators.change_micromodel",
        _model_state,
    ),
    Write(
        "delete micro model",
        "delete",
        lambda w: f"{MODELS}{w.micro_model.id}/",
        None,
        "evaluators.delete_micromodel",
        _model_state,
    ),
    Write(
        "create alert rule",
        "post",
        lambda w: RULES,
        {**RULE, "project_id": None},
        "alerts.add_alertrule",
        _rule_state,
    ),
    Write(
        "change alert rule",
        "patch",
        lambda w: f"{RULES}{w.rule.id}/",
        {"threshold": 0.5},
        "alerts.change_alertrule",
        _rule_state,
    ),
    Write(
        "delete alert rule",
        "delete",
        lambda w: f"{RULES}{w.rule.id}/",
        None,
        "alerts.delete_alertrule",
        _rule_state,
    ),
]


def _send(client: APIClient, write: Write, w: World, url: str | None = None) -> Any:
    body = write.body
    if body is not None and "project_id" in body:
        body = {**body, "project_id": w.project_id}
    return getattr(client, write.method)(url or write.url(w), body, format="json")


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.name)
def test_a_staff_user_without_permissions_is_refused_every_configuration_write(
    world: World, write: Write
) -> None:
    url = write.url(world)  # creates what a delete needs before the state is read
    before = write.state(world)
    staff = _user("ops", project_id=world.project_id)

    response = _send(_client(staff), write, world, url)

    assert response.status_code == 403
    assert write.perm in response.json()["error"]["message"]
    assert write.state(world) == before


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.name)
def test_a_staff_user_with_the_model_permission_may_make_the_write(
    world: World, write: Write
) -> None:
    url = write.url(world)
    before = write.state(world)
    staff = _user("ops", write.perm, project_id=world.project_id)
    entries = AuditEntry.objects.filter(actor="user ops")

    response = _send(_client(staff), write, world, url)

    expected = {"post": 201, "patch": 200, "put": 200, "delete": 204}[write.method]
    assert response.status_code == expected, response.content
    assert write.state(world) != before
    action = {"post": "create", "delete": "delete"}.get(write.method, "update")
    assert entries.filter(action=action).exists()


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.name)
def test_a_user_who_is_not_staff_is_refused_even_with_the_permission(
    world: World, write: Write
) -> None:
    url = write.url(world)
    before = write.state(world)
    member = _user("member", write.perm, staff=False, project_id=world.project_id)

    response = _send(_client(member), write, world, url)

    assert response.status_code == 403
    assert response.json()["error"]["message"] == "only staff may read or change configuration"
    assert write.state(world) == before


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.name)
def test_anonymous_callers_are_refused_every_configuration_write(
    world: World, write: Write
) -> None:
    url = write.url(world)
    before = write.state(world)

    response = _send(APIClient(), write, world, url)

    assert response.status_code == 401
    assert write.state(world) == before


def test_the_reported_attack_leaves_the_shared_judge_untouched(world: World) -> None:
    attacker = _user("ops")  # staff, no permission, no project

    response = _client(attacker).patch(
        f"{JUDGES}{world.judge.id}/",
        {"base_url": "http://listener.example.test:18999/", "api_key_env": "DATABASE_URL"},
        format="json",
    )

    assert response.status_code == 403
    world.judge.refresh_from_db()
    assert (world.judge.base_url, world.judge.api_key_env) == (
        "https://llm.example.test/v1",
        "MICROLENS_JUDGE_API_KEY",
    )
    assert not AuditEntry.objects.filter(model="evaluators.Judge", action="update").exists()


@pytest.mark.parametrize(
    ("url", "perm"),
    [
        (JUDGES, "evaluators.view_judge"),
        (MODELS, "evaluators.view_micromodel"),
        (RULES, "alerts.view_alertrule"),
    ],
)
def test_reading_configuration_needs_the_view_permission(world: World, url: str, perm: str) -> None:
    without = _client(_user("ops", project_id=world.project_id))
    with_view = _client(_user("viewer", perm, project_id=world.project_id))

    refused = without.get(url)
    allowed = with_view.get(url)

    assert refused.status_code == 403
    assert perm in refused.json()["error"]["message"]
    assert allowed.status_code == 200
    assert len(allowed.json()["results"]) == 1


def test_changing_a_micro_models_evaluators_needs_the_evaluator_permissions(
    world: World,
) -> None:
    body = {"evaluators": [{"evaluator": "label_check", "threshold": 0.9}]}
    only_model = _client(_user("ops", "evaluators.change_micromodel", project_id=world.project_id))
    both = _client(
        _user(
            "lead",
            "evaluators.change_micromodel",
            "evaluators.add_evaluatorconfig",
            "evaluators.change_evaluatorconfig",
            "evaluators.delete_evaluatorconfig",
            project_id=world.project_id,
        )
    )
    url = f"{MODELS}{world.micro_model.id}/"

    refused = only_model.patch(url, body, format="json")
    sample_rate_only = only_model.patch(url, {"sample_rate": 20}, format="json")
    allowed = both.patch(url, body, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "you need the evaluators.add_evaluatorconfig, evaluators.change_evaluatorconfig,"
        " evaluators.delete_evaluatorconfig permission to do this"
    )
    assert sample_rate_only.status_code == 200
    assert allowed.status_code == 200
    assert list(
        EvaluatorConfig.objects.filter(micro_model=world.micro_model).values_list(
            "evaluator", "threshold"
        )
    ) == [("label_check", 0.9)]


@pytest.mark.parametrize("method", ["post", "patch", "put", "delete"])
def test_a_project_api_key_reads_judges_and_never_changes_them(world: World, method: str) -> None:
    client = world.key_client()
    url = JUDGES if method == "post" else f"{JUDGES}{world.judge.id}/"
    before = _judge_state(world)

    listed = client.get(JUDGES)
    refused = getattr(client, method)(url, {"name": "x", "model": "m"}, format="json")

    assert [j["name"] for j in listed.json()["results"]] == ["shared"]
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "a project API key cannot change configuration shared by every project"
    )
    assert _judge_state(world) == before


def test_another_projects_key_cannot_reach_this_projects_configuration(world: World) -> None:
    other = create_project("elsewhere")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(other.id)}")
    before = (_model_state(world), _rule_state(world))

    answers = [
        client.patch(f"{MODELS}{world.micro_model.id}/", {"sample_rate": 1}, format="json"),
        client.delete(f"{MODELS}{world.micro_model.id}/"),
        client.patch(f"{RULES}{world.rule.id}/", {"threshold": 0.1}, format="json"),
        client.delete(f"{RULES}{world.rule.id}/"),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert (_model_state(world), _rule_state(world)) == before


# -- a judge's API key variable --------------------------------------------------------------

BAD_KEY_ENVS = [
    "DATABASE_URL",
    "MICROLENS_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "MICROLENS_JUDGE_",
    "microlens_judge_key",
    "MICROLENS_JUDGE_key",
    "MICROLENS_JUDGE_A-B",
    "XMICROLENS_JUDGE_KEY",
]
PREFIX_ERROR = (
    "must name an environment variable starting with MICROLENS_JUDGE_ (capitals, digits, _),"
    " e.g. MICROLENS_JUDGE_OPENAI_KEY"
)


@pytest.mark.parametrize("name", BAD_KEY_ENVS)
def test_the_model_refuses_a_key_variable_without_the_prefix(name: str) -> None:
    judge = Judge(name="j", kind="openai-compatible", model="m", api_key_env=name)

    with pytest.raises(ValidationError) as refused:
        judge.full_clean()

    assert refused.value.message_dict == {"api_key_env": [PREFIX_ERROR]}


@pytest.mark.parametrize("name", ["MICROLENS_JUDGE_API_KEY", "MICROLENS_JUDGE_OPENAI_KEY_2"])
def test_the_model_accepts_a_prefixed_key_variable(name: str) -> None:
    Judge(name="j", kind="openai-compatible", model="m", api_key_env=name).full_clean()


@pytest.mark.parametrize("name", BAD_KEY_ENVS)
def test_the_api_answers_400_naming_api_key_env(name: str) -> None:
    client = _client(_user("ops", "evaluators.add_judge"))

    response = client.post(
        JUDGES, {"name": "j", "kind": "openai-compatible", "api_key_env": name}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"api_key_env: {PREFIX_ERROR}"
    assert not Judge.objects.exists()


def test_the_admin_form_refuses_a_key_variable_without_the_prefix() -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password=PASSWORD))

    response = client.post(
        "/admin/evaluators/judge/add/",
        {
            "name": "gpt",
            "kind": "openai-compatible",
            "base_url": "https://judge.example.com/v1",
            "model": "judge-large",
            "api_key_env": "DATABASE_URL",
            "timeout_seconds": "20",
            "concurrency": "2",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"api_key_env": [PREFIX_ERROR]}
    assert not Judge.objects.exists()


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with judge_server() as running:
        yield running


def test_a_judge_stored_with_another_variable_fails_its_jobs_and_sends_nothing(
    server: JudgeServer, settings, monkeypatch
) -> None:
    settings.MICROLENS_EVAL_QUIET_SECONDS = 60
    monkeypatch.setenv("DATABASE_URL_FOR_TEST", "postgresql://u:hunter2@db/x")
    project = create_project("shop")
    tenant = Tenant(project.id, issue_api_key(project.id))
    judge = Judge.objects.create(
        name="legacy", kind="openai-compatible", base_url=server.url, model="judge-7b"
    )
    # A row saved before the prefix was enforced (no validation on a queryset update).
    Judge.objects.filter(pk=judge.pk).update(api_key_env="DATABASE_URL_FOR_TEST")
    configure(tenant.project_id, evaluators={"task_completion": 0.5}, judge=judge)
    tenant.store(classifier_trace())
    [job_id] = schedule_all().job_ids
    server.then(verdict(0.9, True))

    outcome = run_evaluation_job(job_id)

    job = EvaluationJob.objects.get(pk=job_id)
    assert outcome.status == "failed"
    assert job.status == "failed"
    assert job.last_error == (
        "judge error: judge 'legacy' names api_key_env 'DATABASE_URL_FOR_TEST', which is not"
        f" read: it {PREFIX_ERROR}"
    )
    assert server.requests == []


def test_the_database_check_lists_judges_with_another_variable() -> None:
    Judge.objects.create(name="fine", kind="openai-compatible", model="m")
    legacy = Judge.objects.create(name="legacy", kind="openai-compatible", model="m")
    Judge.objects.filter(pk=legacy.pk).update(api_key_env="DATABASE_URL")
    out, err = io.StringIO(), io.StringIO()

    call_command("check", "--database", "default", stdout=out, stderr=err)

    assert "evaluators.W001" in err.getvalue()
    assert "judge 'legacy': api_key_env 'DATABASE_URL'" in err.getvalue()
    assert "'fine'" not in err.getvalue()
    # What `microlens up` prints after migrating.
    reported = checks.run_checks(databases=["default"], tags=[checks.Tags.database])
    assert [(m.id, m.obj) for m in reported] == [("evaluators.W001", legacy)]


# -- the audit log ---------------------------------------------------------------------------


def _entries(model: str) -> list[tuple[str, str, list[str]]]:
    return [
        (e.actor, e.action, e.changed)
        for e in AuditEntry.objects.filter(model=model).order_by("id")
    ]


def test_an_api_change_is_recorded_with_who_and_before_and_after(world: World) -> None:
    staff = _user("ops", "evaluators.change_judge")

    response = _client(staff).patch(
        f"{JUDGES}{world.judge.id}/", {"model": "judge-xl", "timeout_seconds": 20}, format="json"
    )

    assert response.status_code == 200
    entry = AuditEntry.objects.get(model="evaluators.Judge", action="update")
    assert (entry.actor, entry.user_id, entry.object_id, entry.object_repr) == (
        "user ops",
        staff.pk,
        str(world.judge.pk),
        "shared (openai-compatible)",
    )
    assert entry.changed == ["model", "timeout_seconds"]
    assert (entry.before["model"], entry.after["model"]) == ("judge-large", "judge-xl")
    assert (entry.before["timeout_seconds"], entry.after["timeout_seconds"]) == (30.0, 20.0)
    assert entry.after["api_key_env"] == "MICROLENS_JUDGE_API_KEY"


def test_a_project_keys_changes_are_recorded_as_that_projects_key(world: World) -> None:
    AuditEntry.objects.all().delete()

    created = world.key_client().post(
        MODELS, {"name": "router-mini", "evaluators": [{"evaluator": "label_check"}]}, format="json"
    )
    deleted = world.key_client().delete(f"{RULES}{world.rule.id}/")

    assert (created.status_code, deleted.status_code) == (201, 204)
    assert _entries("evaluators.MicroModel") == [("API key of project shop", "create", [])]
    model = AuditEntry.objects.get(model="evaluators.MicroModel")
    assert (model.before, model.after["name"]) == (None, "router-mini")
    assert _entries("evaluators.EvaluatorConfig") == [("API key of project shop", "create", [])]
    rule = AuditEntry.objects.get(model="alerts.AlertRule")
    assert (rule.action, rule.before["name"], rule.after) == ("delete", "existing", None)


def test_admin_changes_are_recorded_and_a_deletion_keeps_what_was_deleted() -> None:
    root = get_user_model().objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(root)

    added = client.post(
        "/admin/dashboard/modelprice/add/",
        {
            "model_pattern": "gpt-4o*",
            "input_per_million": "2.50",
            "output_per_million": "10.00",
            "cached_input_per_million": "",
            "effective_from": "2026-01-01",
        },
    )
    price = ModelPrice.objects.get()
    deleted = client.post(f"/admin/dashboard/modelprice/{price.pk}/delete/", {"post": "yes"})

    assert (added.status_code, deleted.status_code) == (302, 302)
    assert _entries("dashboard.ModelPrice")[0][:2] == ("user root", "create")
    removal = AuditEntry.objects.get(model="dashboard.ModelPrice", action="delete")
    assert removal.actor == "user root"
    assert (removal.before["model_pattern"], removal.before["input_per_million"]) == (
        "gpt-4o*",
        "2.500000",
    )
    assert removal.after is None
    assert removal.before["effective_from"] == date(2026, 1, 1).isoformat()


def test_api_key_secrets_are_redacted_and_a_revocation_is_recorded() -> None:
    project = create_project("shop")
    raw = issue_api_key(project.id)
    key = ApiKey.objects.get()
    root = get_user_model().objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(root)

    revoked = client.post(
        "/admin/tracestore/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )

    assert revoked.status_code == 302
    issued, revocation = AuditEntry.objects.filter(model="tracestore.ApiKey").order_by("id")
    assert (issued.actor, issued.action, issued.after["digest"]) == ("system", "create", REDACTED)
    assert (revocation.actor, revocation.action, revocation.changed) == (
        "user root",
        "update",
        ["revoked_at"],
    )
    stored = str(list(AuditEntry.objects.values("before", "after")))
    assert key.digest not in stored
    assert raw not in stored


def test_using_an_api_key_is_not_a_change(world: World) -> None:
    AuditEntry.objects.all().delete()

    world.key_client().get(JUDGES)

    assert not AuditEntry.objects.exists()


def test_webhook_urls_keep_only_their_scheme_and_host(world: World) -> None:
    response = world.key_client().patch(
        f"{RULES}{world.rule.id}/",
        {"webhook_urls": ["https://hooks.example.com/services/T000/B000/XXXXSECRET"]},
        format="json",
    )

    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get(model="alerts.AlertRule", action="update")
    assert entry.after["webhook_urls"] == [f"https://hooks.example.com/{REDACTED}"]
    assert "XXXXSECRET" not in str(entry.after)


def test_an_entry_is_written_in_the_changes_transaction(world: World) -> None:
    count = AuditEntry.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        world.judge.model = "rolled-back"
        world.judge.save()
        assert AuditEntry.objects.count() == count + 1
        raise RuntimeError("the change fails after the save")

    assert AuditEntry.objects.count() == count


def test_a_refused_change_writes_no_entry(world: World) -> None:
    staff = _user("ops", "evaluators.delete_judge")
    count = AuditEntry.objects.count()

    in_use = _client(staff).delete(f"{JUDGES}{world.judge.id}/")

    assert in_use.status_code == 400
    assert AuditEntry.objects.count() == count


def test_management_commands_record_themselves_as_the_actor() -> None:
    call_command(
        "seed_demo_data", "--spans", "20", "--days", "1", "--no-fold", stdout=io.StringIO()
    )

    actors = set(
        AuditEntry.objects.filter(model="dashboard.ModelPrice").values_list("actor", flat=True)
    )
    assert actors == {"command seed_demo_data"}
    assert AuditEntry.objects.filter(model="tracestore.Project", actor="command seed_demo_data")


def test_code_names_its_actor_with_acting_as() -> None:
    with acting_as("command example"):
        create_project("shop")

    assert _entries("tracestore.Project") == [("command example", "create", [])]


def test_the_admin_shows_the_log_read_only(world: World) -> None:
    viewer = _user("auditor", "audit.view_auditentry")
    client = Client()
    client.force_login(viewer)
    entry = AuditEntry.objects.filter(model="evaluators.Judge").first()
    assert entry is not None

    listing = client.get("/admin/audit/auditentry/")
    detail = client.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    add = client.get("/admin/audit/auditentry/add/")
    delete = client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"})
    edit = client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"actor": "someone else"})

    assert listing.status_code == 200
    assert "shared (openai-compatible)" in listing.content.decode()
    assert detail.status_code == 200
    assert "judge-large" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    assert (add.status_code, delete.status_code, edit.status_code) == (403, 403, 403)
    entry.refresh_from_db()
    assert entry.actor == "system"


def test_the_log_is_hidden_from_staff_without_the_view_permission(world: World) -> None:
    client = Client()
    client.force_login(_user("ops"))

    assert client.get("/admin/audit/auditentry/").status_code == 403


def test_revoking_a_key_through_the_service_is_recorded() -> None:
    project = create_project("shop")
    raw = issue_api_key(project.id)

    with acting_as("command revoke"):
        assert revoke_api_key(raw) is True
    again = revoke_api_key(raw)

    assert again is False
    assert _entries("tracestore.ApiKey") == [
        ("system", "create", []),
        ("command revoke", "update", ["revoked_at"]),
    ]


def test_a_micro_model_registered_from_traffic_is_recorded_as_the_system() -> None:
    register_micro_model(create_project("shop").id, "intent-mini")

    assert _entries("evaluators.MicroModel") == [("system", "create", [])]
    assert sorted(
        e.after["evaluator"] for e in AuditEntry.objects.filter(model="evaluators.EvaluatorConfig")
    ) == ["groundedness", "label_check", "task_completion"]


def test_a_projects_members_changing_is_recorded_from_either_side() -> None:
    project = Project.objects.get(pk=create_project("shop").id)
    alice = get_user_model().objects.create_user("alice", password=PASSWORD)
    bob = get_user_model().objects.create_user("bob", password=PASSWORD)

    with acting_as("command members"):
        project.members.add(alice)
        bob.projects.add(project)
        project.members.remove(alice)

    changes = [
        (e.before, e.after)
        for e in AuditEntry.objects.filter(model="tracestore.Project", action="update").order_by(
            "id"
        )
    ]
    assert changes == [
        ({"members": []}, {"members": [alice.pk]}),
        ({"members": [alice.pk]}, {"members": [alice.pk, bob.pk]}),
        ({"members": [alice.pk, bob.pk]}, {"members": [bob.pk]}),
    ]
