from django.urls import path

from .consumers import DeviceConsumer

websocket_urlpatterns = [
    path("ws/", DeviceConsumer.as_asgi()),
]
