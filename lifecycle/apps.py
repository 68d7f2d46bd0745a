from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    verbose_name = "Task lifecycle inspector"

    def ready(self) -> None:
        # Dramatiq's broker is global and actors bind to it when their module is imported,
        # so it is set here, before anything can import an actor, in every process.
        from django.db.models.signals import post_migrate

        from lifecycle.people import roles
        from lifecycle.runtime.broker import setup_broker

        setup_broker()
        post_migrate.connect(roles.ensure, sender=self)
