"""Websocket routes."""

from django.urls import path

from lifecycle.consumers import FeedConsumer, TaskConsumer

websocket_urlpatterns = [
    path("ws/feed", FeedConsumer.as_asgi()),
    path("ws/tasks/<str:task_key>", TaskConsumer.as_asgi()),
]
