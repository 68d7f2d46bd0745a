"""``manage.py lifecycle``: the Django command that dispatches to ``lifecycle.cli``."""
