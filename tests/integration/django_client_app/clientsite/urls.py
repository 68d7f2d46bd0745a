from clientjobs import views
from django.urls import path

urlpatterns = [
    path("jobs/<int:job_id>/", views.detail),
    path("jobs/<int:job_id>/family/", views.family),
    path("jobs/<int:job_id>/broken/", views.broken),
    path("jobs/<int:job_id>/status/", views.status),
    path("jobs/<int:job_id>/start/", views.start),
]
