from django.urls import path

from lifecycle import api, views
from lifecycle.views_compare import compare_runs

app_name = "lifecycle"
urlpatterns = [
    path("", views.home, name="home"),
    path("tasks/<str:task_key>", views.task_page, name="task"),
    path("runs/<int:run_id>", views.run_page, name="run"),
    path("runs/<int:run_id>/resubmit", views.resubmit, name="resubmit"),
    path("runs/<int:run_id>/compare/<int:other_id>", compare_runs, name="compare"),
    path("scenarios/<str:name>", views.scenario_page, name="scenario"),
    path("scenarios/<str:name>/runs", views.start_run, name="start-run"),
    path("api/scenarios", api.scenarios, name="api-scenarios"),
    path("api/scenarios/<str:name>/runs", api.start_run, name="api-start-run"),
    path("api/runs/<int:run_id>", api.run_detail, name="api-run"),
    path("api/runs/<int:run_id>/resubmit", api.resubmit_run, name="api-resubmit"),
    path("api/tasks/<str:task_key>/timeline", views.timeline_json, name="api-timeline"),
    path("api/events/<int:event_id>", views.event_fields, name="api-event"),
]
