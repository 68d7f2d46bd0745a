"""Websocket routes."""

from django.urls import path

from dashboard import converters  # noqa: F401 - registers <task_key:>
from dashboard.consumers import FeedConsumer, TaskConsumer

websocket_urlpatterns = [
    path("ws/feed", FeedConsumer.as_asgi()),
    # A key may hold "/"; its dot segments are escaped as the task page's (converters).
    path("ws/tasks/<task_key:task_key>", TaskConsumer.as_asgi()),
]
