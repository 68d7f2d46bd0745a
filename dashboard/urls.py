"""Every URL of the dashboard, its accounts and admin, and the lab."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path

from dashboard import api, converters  # noqa: F401 - registers <task_key:>
from dashboard.login import LoginPage
from dashboard.pages import compare, home, run, scenario, status, task

pages = [
    path("", home.home, name="home"),
    # A task key is the observed system's, and may hold "/" (and anything else): its dot
    # segments are escaped (dashboard.converters), so no link to it leaves its page.
    path("tasks/<task_key:task_key>", task.task_page, name="task"),
    # A long timeline's windows and a folded run's reads, as HTML rows (lifecycle.js).
    path("windows/<task_key:task_key>", task.window, name="window"),
    path("reads/<task_key:task_key>", task.read_run, name="read-run"),
    path("commits/<task_key:task_key>", task.outline_commits, name="outline-commits"),
    path("runs/<int:run_id>", run.run_page, name="run"),
    path("runs/<int:run_id>/resubmit", run.resubmit, name="resubmit"),
    path("runs/<int:run_id>/edit", run.edit_and_run, name="edit-run"),
    path("runs/<int:run_id>/compare/<int:other_id>", compare.compare_runs, name="compare"),
    path("scenarios/<str:name>", scenario.scenario_page, name="scenario"),
    path("scenarios/<str:name>/runs", run.start_run, name="start-run"),
    path("status", status.status_page, name="status"),
    path("api/status", api.status, name="api-status"),
    path("api/scenarios", api.scenarios, name="api-scenarios"),
    path("api/scenarios/<str:name>/runs", api.start_run, name="api-start-run"),
    path("api/runs/<int:run_id>", api.run_detail, name="api-run"),
    path("api/runs/<int:run_id>/resubmit", api.resubmit_run, name="api-resubmit"),
    path("api/tasks/<task_key:task_key>/timeline", api.timeline, name="api-timeline"),
    path("api/tasks/<task_key:task_key>/otlp", api.otlp, name="api-otlp"),
    path("api/import", api.import_timeline, name="api-import"),
    path("import", task.import_page, name="import"),
    path("api/events", api.post_events, name="api-events"),
    path("api/events/<int:event_id>", api.event_fields, name="api-event"),
]

accounts = [
    # A name or address that failed too often is refused for a while (lifecycle.people.logins).
    path("login", LoginPage.as_view(), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

urlpatterns = [
    *([path("lab/", include("lifecycle.lab.urls"))] if settings.LIFECYCLE_LAB else []),
    *accounts,
    path("", include((pages, "dashboard"))),
    # daphne serves the few static files itself (ours and the admin's, found by the
    # staticfiles finders): no separate web server to set up, DEBUG or not.
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
