from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self):
        # Connects the receivers that close a device when its token or session ends.
        from . import auth  # noqa: F401
