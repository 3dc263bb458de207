from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.csrf import ensure_csrf_cookie


@login_required
@ensure_csrf_cookie
def index(request):
    return render(request, "chat/index.html")


async def health(request):
    """The fan-out link's state and counters: 503 while a Redis shard is unreachable.

    Async, so that it runs on the worker's event loop and starts the link
    there if no device has yet.
    """
    state = await get_channel_layer().stats()
    return JsonResponse(state, status=503 if state["redis"] == "down" else 200)


def server_error(request):
    """The 500 page with DEBUG off: it names nothing of what failed (that goes to the log).

    JSON under /api/, where every other error is JSON too; Django's plain page elsewhere.
    """
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)
