"""Module given to Dramatiq's CLI: sets up Django (and so the broker), then the actors.

python -m dramatiq lifecycle.worker --processes 1 --threads 4
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("LIFECYCLE_PROCESS_ROLE", "worker")
django.setup()

from lifecycle.client.logs import install_log_handler  # noqa: E402

# The WARNING+ records logged while handling a task become its events.
install_log_handler("worker")

import lifecycle.lab.actors  # noqa: E402, F401
