from django.urls import path

from . import views

app_name = "api"

urlpatterns = [
    path("traces/", views.TraceListView.as_view(), name="trace-list"),
    path("traces/<str:trace_id>/", views.TraceDetailView.as_view(), name="trace-detail"),
]
