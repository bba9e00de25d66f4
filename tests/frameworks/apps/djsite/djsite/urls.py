"""URLs of the test project."""

from django.http import HttpResponse
from django.urls import path

from djsite import views

urlpatterns = [
    path("health", lambda request: HttpResponse("ok")),
    path("order/<int:n>", views.order),
    path("boom", views.boom),
]
