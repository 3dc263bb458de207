from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
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
