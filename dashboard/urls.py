from django.urls import include, path

urlpatterns = [
    path("lab/", include("lifecycle.lab.urls")),
    path("", include("lifecycle.urls")),
]
