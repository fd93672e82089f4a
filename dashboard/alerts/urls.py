from django.urls import path

from . import views

app_name = "alerts"

urlpatterns = [
    path("", views.alerts_page, name="page"),
    path("firing/", views.firing, name="firing"),
]
