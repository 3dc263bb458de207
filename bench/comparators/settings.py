"""The product's settings, with the channel layer and the fan-out taken from the environment.

BENCH_CHANNEL_LAYERS: a JSON object that replaces CHANNEL_LAYERS.
BENCH_FANOUT: which device consumer serves /ws/ (see bench.comparators.consumers).
Database, authentication, models and services stay the product's.
"""

import json
import os

from chatproject.settings import *  # noqa: F401,F403

if os.environ.get("BENCH_CHANNEL_LAYERS"):
    CHANNEL_LAYERS = json.loads(os.environ["BENCH_CHANNEL_LAYERS"])

ASGI_APPLICATION = "bench.comparators.asgi.application"
BENCH_FANOUT = os.environ.get("BENCH_FANOUT", "room-group")
