from django.conf import settings
from django.db import models
from django.db.models import Q


class Room(models.Model):
    class Kind(models.TextChoices):
        GROUP = "group"
        DIRECT = "direct"

    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GROUP)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The last seq handed out; the row lock on it is what orders a room's messages.
    last_seq = models.PositiveBigIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Bumped with every membership change, so a cached member list is known stale.
    members_version = models.PositiveIntegerField(default=0)
    # "lo_id:hi_id" for direct rooms; unique, so a pair has at most one.
    direct_key = models.CharField(max_length=64, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]

    def __str__(self):
        return self.name or f"room {self.pk}"


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="one_membership_per_user"),
        ]
        # "rooms of a user with unread counts" starts from the user.
        indexes = [models.Index(fields=["user", "room"], name="membership_user_room")]

    def __str__(self):
        return f"{self.user} in {self.room} ({self.role})"

    @property
    def can_manage(self):
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            # Also the index for "latest N", "after seq N" and "before seq N".
            models.UniqueConstraint(fields=["room", "seq"], name="one_message_per_seq"),
            models.UniqueConstraint(
                fields=["room", "sender", "client_id"],
                condition=Q(client_id__isnull=False),
                name="one_message_per_client_id",
            ),
            models.CheckConstraint(condition=Q(seq__gte=1), name="seq_starts_at_one"),
        ]

    def __str__(self):
        return f"#{self.seq} in {self.room_id}"
