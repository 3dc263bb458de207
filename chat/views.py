from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render


@login_required
def index(request):
    return render(request, "chat/index.html")


def health(request):
    """The fan-out link's state and counters: 503 while a Redis shard is unreachable."""
    state = get_channel_layer().stats()
    return JsonResponse(state, status=503 if state["redis"] == "down" else 200)
