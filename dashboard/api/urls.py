from django.urls import path

from . import metrics, views

app_name = "api"

urlpatterns = [
    path("traces/", views.TraceListView.as_view(), name="trace-list"),
    path("traces/<str:trace_id>/", views.TraceDetailView.as_view(), name="trace-detail"),
    path("metrics/<str:name>/", metrics.MetricView.as_view(), name="metric"),
]
