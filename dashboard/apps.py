from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Lifecycle inspector dashboard"

    def ready(self) -> None:
        # Every process reads the scenario files now: a bad one stops it before it serves,
        # naming the file, the line and the reason (ScenarioFileError).
        from lifecycle.scenarios import catalogue

        catalogue.activate()
        # A logout closes the session's live pages (its signal's receiver).
        from dashboard import session_sockets  # noqa: F401
