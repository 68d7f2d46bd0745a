"""Loaded with ``-p`` before Django's settings: test-only defaults for the environment.

The namespace keeps the test run's RabbitMQ queues apart from a `make run` on the same
machine; the test database is ``test_<name>`` as pytest-django makes it.
"""

import os

os.environ.setdefault("LIFECYCLE_NAMESPACE", "lifecycle-test")
os.environ.setdefault("LOG_LEVEL", "WARNING")
