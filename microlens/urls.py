from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from .health import healthz

handler400 = "dashboard.views.bad_request"
handler404 = "dashboard.views.not_found"

# The admin names the product and its "View site" link leads back to the dashboard.
admin.site.site_header = "microlens admin"
admin.site.site_title = "microlens admin"
admin.site.index_title = "Configuration: micro models, judges, prices, cohorts, alerts"
admin.site.site_url = "/overview/"

urlpatterns = [
    path("healthz", healthz),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin).
    path("favicon.ico", lambda request: redirect(static("dashboard/favicon.svg"))),
    path("admin/", admin.site.urls),
    path("api/v1/", include("dashboard.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Logged-in people only; the split view serves its init script as a request of its own
    # (no inline script: see dashboard/csp.py).
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("alerts/", include("dashboard.alerts.urls")),
    path("", include("dashboard.urls")),
]
