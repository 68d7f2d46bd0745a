from django.urls import path

from jobs import views

urlpatterns = [
    path("jobs", views.create, name="job-create"),
    path("jobs/priority", views.create_priority, name="job-create-priority"),
    path("jobs/<int:job_id>", views.detail, name="job-detail"),
    path("jobs/<int:job_id>/status", views.status, name="job-status"),
]
