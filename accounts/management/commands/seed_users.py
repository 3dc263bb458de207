import json

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from chat import services

BATCH = 2000


class Command(BaseCommand):
    help = (
        "Create N users named PREFIX0…PREFIX{N-1} with API tokens (all with the same "
        "password), optionally all members of one new group room; print them as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--prefix", required=True)
        parser.add_argument("--room", help="also create a group room with all of them")
        parser.add_argument("--password", default="chat-seed-password")

    @transaction.atomic
    def handle(self, *args, count, prefix, room, password, **options):
        if count < 1:
            raise CommandError("--count must be at least 1.")
        User = get_user_model()
        names = [f"{prefix}{i}" for i in range(count)]
        if User.objects.filter(username__in=names).exists():
            raise CommandError(f"Some users named {prefix}… exist already.")
        # One hash for all: hashing is deliberately slow, and these are test users.
        hashed = make_password(password)
        User.objects.bulk_create([User(username=name, password=hashed) for name in names], batch_size=BATCH)
        users = list(User.objects.filter(username__in=names).order_by("id"))
        tokens = [Token(key=Token.generate_key(), user=user) for user in users]
        Token.objects.bulk_create(tokens, batch_size=BATCH)
        room_id = None
        if room:
            created = services.create_group_room(
                creator=users[0], name=room, member_ids=[user.pk for user in users[1:]]
            )
            room_id = created.pk
        result = {
            "room": room_id,
            "users": [{"id": t.user.pk, "username": t.user.username, "token": t.key} for t in tokens],
        }
        self.stdout.write(json.dumps(result))
