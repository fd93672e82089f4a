"""Admin for projects, their API keys, and the cohort dimensions ingest extracts.

Keys are issued from the Projects list ("Issue a new API key"): the raw key is shown once,
in the action's own answer (never in a message, which would travel in a cookie or sit in
the session), and only its digest is stored. Keys are revoked, never edited.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from .models import ApiKey, CohortDimension, Project
from .services import issue_api_key


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "active_keys", "member_count", "created_at")
    search_fields = ("name",)
    filter_horizontal = ("members",)
    readonly_fields = ("created_at",)
    actions = ("issue_key",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _active_keys=Count(
                    "api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True
                ),
                _members=Count("members", distinct=True),
            )
        )

    @admin.display(description="active API keys", ordering="_active_keys")
    def active_keys(self, project: Project) -> int:
        return project._active_keys  # type: ignore[attr-defined]

    @admin.display(description="members", ordering="_members")
    def member_count(self, project: Project) -> int:
        return project._members  # type: ignore[attr-defined]

    @admin.action(description="Issue a new API key", permissions=["change"])
    def issue_key(self, request: HttpRequest, queryset: QuerySet[Project]) -> TemplateResponse:
        issued = [
            (project, issue_api_key(project.id, name=f"issued by {request.user.get_username()}"))
            for project in queryset.order_by("name")
        ]
        response = TemplateResponse(
            request,
            "admin/tracestore/project/issued_keys.html",
            {**self.admin_site.each_context(request), "issued": issued, "opts": self.opts},
        )
        response["Cache-Control"] = "no-store"
        return response


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "project", "created_at", "last_used_at", "revoked_at")
    list_filter = (ActiveFilter, "project")
    list_select_related = ("project",)
    search_fields = ("prefix", "name", "project__name")
    fields = ("prefix", "name", "project", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "project", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key is created by issue_api_key (Projects list -> "Issue a new API key"), which
        # generates it and stores its digest; a form could do neither.
        return False

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        # One save per key (not a queryset update) so that each revocation is audited.
        now = timezone.now()
        with transaction.atomic():
            keys = list(queryset.filter(revoked_at__isnull=True).select_for_update(of=("self",)))
            for key in keys:
                key.revoked_at = now
                key.save(update_fields=["revoked_at"])
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)


_COHORT_DIMENSION_SAVED = (
    "Saved. The receivers read the change within {seconds} s (no restart); spans stored "
    "before are not back-filled. Metrics already folded are regrouped by "
    "`manage.py refresh_metrics --resum`."
)


@admin.register(CohortDimension)
class CohortDimensionAdmin(admin.ModelAdmin):
    """Any span or resource attribute key can be a cohort dimension: ingest extracts every
    configured key (see the model)."""

    list_display = ("display_name", "key")
    search_fields = ("key", "display_name")

    def _saved(self, request: HttpRequest) -> None:
        seconds = settings.MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS
        messages.info(request, _COHORT_DIMENSION_SAVED.format(seconds=seconds))

    def save_model(self, request: HttpRequest, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        self._saved(request)

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        self._saved(request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        self._saved(request)
