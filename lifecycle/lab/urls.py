from django.urls import path

from lifecycle.lab import views

app_name = "lab"
urlpatterns = [
    path("api/tasks", views.create_task, name="create"),
    path("api/tasks/<str:task_id>", views.get_task, name="detail"),
    path("api/cached/tasks/<str:task_id>", views.get_task_cached, name="detail-cached"),
]
