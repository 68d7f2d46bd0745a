from django.conf import settings
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("lab/", include("lifecycle.lab.urls")),
    path("", include("lifecycle.urls")),
    # daphne serves the few static files itself: no separate web server to set up.
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.BASE_DIR / "static"}),
]
