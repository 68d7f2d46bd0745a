from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "lifecycle.lab"
    label = "lab"
    verbose_name = "Lab task system"
