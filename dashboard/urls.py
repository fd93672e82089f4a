import plotly
from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .trace_feedback import post_trace_feedback

app_name = "dashboard"

urlpatterns = [
    path("", views.trace_list, name="trace-list"),
    path("traces.csv", views.trace_export, {"fmt": "csv"}, name="trace-export-csv"),
    path("traces.json", views.trace_export, {"fmt": "json"}, name="trace-export-json"),
    path("traces/<str:trace_id>/", views.trace_detail, name="trace-detail"),
    path("traces/<str:trace_id>/feedback/", post_trace_feedback, name="trace-feedback"),
    path("overview/", views.overview, name="overview"),
    path("micro-models/<path:name>/", views.micro_model, name="micro-model"),
    path("cohorts/", views.cohorts, name="cohorts"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="dashboard/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path(f"assets/plotly-{plotly.__version__}.min.js", views.plotly_js, name="plotly-js"),
]
