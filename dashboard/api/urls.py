from django.urls import path

from evaluators import api as config

from ..access import visible_project_ids
from ..alerts import api as alerts
from . import (
    advice,
    compare,
    economics,
    evaluations,
    label_quality,
    metrics,
    model_decisions,
    spans,
    views,
)

app_name = "api"

urlpatterns = [
    path("traces/", views.TraceListView.as_view(), name="trace-list"),
    path("traces/<str:trace_id>/", views.TraceDetailView.as_view(), name="trace-detail"),
    path("traces/<str:trace_id>/spans/", spans.TraceSpanListView.as_view(), name="trace-span-list"),
    path(
        "traces/<str:trace_id>/spans/<str:span_id>/",
        spans.SpanDetailView.as_view(),
        name="span-detail",
    ),
    path("spans/", spans.SpanListView.as_view(), name="span-list"),
    path("evaluations/", evaluations.EvaluationListView.as_view(), name="evaluation-list"),
    path(
        "evaluations/<int:evaluation_id>/",
        evaluations.EvaluationDetailView.as_view(),
        name="evaluation-detail",
    ),
    path("feedback/", evaluations.FeedbackView.as_view(), name="feedback"),
    path("metrics/<str:name>/", metrics.MetricView.as_view(), name="metric"),
    path("micro-models/", metrics.MicroModelListView.as_view(), name="micro-model-list"),
    # Before the detail route: its <path:name> would take "name/compare" whole.
    path("micro-models/<path:name>/compare/", compare.CompareView.as_view(), name="compare"),
    path(
        "micro-models/<path:name>/economics/", economics.EconomicsView.as_view(), name="economics"
    ),
    path(
        "micro-models/<path:name>/label-quality/",
        label_quality.MicroModelLabelQualityView.as_view(),
        name="micro-model-label-quality",
    ),
    path("micro-models/<path:name>/shadow/", model_decisions.ShadowAgreementView.as_view()),
    path("micro-models/<path:name>/thresholds/", model_decisions.ThresholdsView.as_view()),
    path(
        "micro-models/<path:name>/",
        metrics.MicroModelDetailView.as_view(),
        name="micro-model-detail",
    ),
    path(
        "config/micro-models/",
        config.MicroModelConfigList.as_view(project_ids=visible_project_ids),
        name="micro-model-config-list",
    ),
    path(
        "config/micro-models/<int:pk>/",
        config.MicroModelConfigDetail.as_view(project_ids=visible_project_ids),
        name="micro-model-config-detail",
    ),
    path("config/judges/", config.JudgeList.as_view(), name="judge-list"),
    path("config/judges/<int:pk>/", config.JudgeDetail.as_view(), name="judge-detail"),
    path("advice/routing/", advice.RoutingAdviceView.as_view(), name="routing-advice"),
    path("alert-rules/", alerts.AlertRuleListView.as_view(), name="alert-rule-list"),
    path("alert-rules/<int:pk>/", alerts.AlertRuleDetailView.as_view(), name="alert-rule-detail"),
    path("alert-events/", alerts.AlertEventListView.as_view(), name="alert-event-list"),
]
