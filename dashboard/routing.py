"""Websocket routes."""

from django.urls import path

from dashboard.consumers import FeedConsumer, TaskConsumer

websocket_urlpatterns = [
    path("ws/feed", FeedConsumer.as_asgi()),
    path("ws/tasks/<path:task_key>", TaskConsumer.as_asgi()),  # a key may hold "/"
]
