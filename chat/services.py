"""Writes. Each one is a transaction, and its events are published on commit.

Callers check access with `chat.selectors` first; the checks repeated here
are the ones a concurrent change could invalidate between the two.
"""

from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import events
from .errors import Invalid, NotAllowed, NotMember, TooLarge
from .models import Membership, Message, Room

MAX_BODY_CHARS = 4000
MAX_NAME_CHARS = 200
MAX_CLIENT_ID_CHARS = 64
MAX_MEMBERS_PER_CALL = 1000


def storable(text):
    """Whether a database can store this text: no NUL (PostgreSQL refuses it) and
    no unpaired surrogate (JSON's "\\ud800" parses to one; it has no UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_body(body):
    """Return the trimmed body, or refuse it: 1 to 4,000 characters after trimming."""
    if not isinstance(body, str):
        raise Invalid("body must be a string.", field="body")
    body = body.strip()
    if not body:
        raise Invalid("body must not be empty.", field="body")
    if len(body) > MAX_BODY_CHARS:
        raise TooLarge(f"body is over {MAX_BODY_CHARS} characters.", field="body")
    if not storable(body):
        # Refused everywhere alike, whatever the database.
        raise Invalid("body must not contain NUL characters or unpaired surrogates.", field="body")
    return body


def clean_client_id(client_id):
    if client_id is None or client_id == "":
        return None
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_CHARS or not storable(client_id):
        raise Invalid(f"client_id must be a string of at most {MAX_CLIENT_ID_CHARS} characters.", field="client_id")
    return client_id


def clean_name(name):
    if not isinstance(name, str):
        raise Invalid("name must be a string.", field="name")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS or not storable(name):
        raise Invalid(f"name must be at most {MAX_NAME_CHARS} characters.", field="name")
    return name


def _existing_user_ids(user_ids, *, field):
    wanted = set(user_ids)
    found = set(get_user_model().objects.filter(pk__in=wanted, is_active=True).values_list("pk", flat=True))
    if wanted - found:
        missing = ", ".join(str(i) for i in sorted(wanted - found)[:10])
        raise Invalid(f"Unknown user ids: {missing}.", field=field)
    return found


def _announce_joined(room, memberships):
    """Send room.joined to the new members: one publish per role, not per member."""
    by_role = {}
    for membership in memberships:
        membership.room = room
        by_role.setdefault(membership.role, []).append(membership)
    for group in by_role.values():
        event = {"type": "room.joined", "room": events.room_data(group[0], unread=room.last_seq)}
        events.send_to_users_on_commit([m.user_id for m in group], event)


def _bump_members_version(room):
    Room.objects.filter(pk=room.pk).update(members_version=F("members_version") + 1)


@transaction.atomic
def create_group_room(*, creator, name, member_ids=()):
    """Create a group room owned by its creator, with these other members."""
    name = clean_name(name)
    if not name:
        raise Invalid("name must not be empty.", field="name")
    others = _existing_user_ids(set(member_ids) - {creator.pk}, field="members")
    room = Room.objects.create(name=name, kind=Room.Kind.GROUP, created_by=creator)
    memberships = [Membership(room=room, user=creator, role=Membership.Role.OWNER)]
    memberships += [Membership(room=room, user_id=uid) for uid in sorted(others)]
    Membership.objects.bulk_create(memberships)
    _announce_joined(room, memberships)
    return room


def _direct_key(a, b):
    lo, hi = sorted((a, b))
    return f"{lo}:{hi}"


def get_or_create_direct_room(*, user, other_id):
    """Return (room, created): the one direct room of this pair of users."""
    if other_id == user.pk:
        raise Invalid("A direct room needs exactly one other member.", field="members")
    _existing_user_ids({other_id}, field="members")
    key = _direct_key(user.pk, other_id)
    room = Room.objects.filter(direct_key=key).first()
    if room is not None:
        return room, False
    try:
        with transaction.atomic():
            room = Room.objects.create(kind=Room.Kind.DIRECT, created_by=user, direct_key=key)
            memberships = [
                Membership(room=room, user=user, role=Membership.Role.OWNER),
                Membership(room=room, user_id=other_id, role=Membership.Role.MEMBER),
            ]
            Membership.objects.bulk_create(memberships)
            _announce_joined(room, memberships)
        return room, True
    except IntegrityError:
        # The other side created it at the same moment: theirs is the one.
        return Room.objects.get(direct_key=key), False


@transaction.atomic
def add_members(*, room, user_ids, role=Membership.Role.MEMBER):
    """Add users to a group room; return how many were not members before."""
    if room.kind == Room.Kind.DIRECT:
        raise Invalid("Members of a direct room cannot change.", field="users")
    if len(user_ids) > MAX_MEMBERS_PER_CALL:
        raise Invalid(f"At most {MAX_MEMBERS_PER_CALL} users at once.", field="users")
    wanted = _existing_user_ids(set(user_ids), field="users")
    Room.objects.select_for_update().filter(pk=room.pk).first()
    already = set(Membership.objects.filter(room=room, user_id__in=wanted).values_list("user_id", flat=True))
    memberships = [Membership(room=room, user_id=uid, role=role) for uid in sorted(wanted - already)]
    if memberships:
        Membership.objects.bulk_create(memberships)
        _bump_members_version(room)
        room.refresh_from_db()
        _announce_joined(room, memberships)
    return len(memberships)


@transaction.atomic
def remove_member(*, room, user_id):
    """Remove a user from a room; its devices stop receiving the room at once."""
    deleted, _ = Membership.objects.filter(room=room, user_id=user_id).delete()
    if not deleted:
        raise NotMember("Not a member of this room.")
    _bump_members_version(room)
    events.send_to_users_on_commit([user_id], {"type": "room.left", "room": room.pk})


@transaction.atomic
def set_role(*, room, user_id, role):
    """Change a member's role."""
    if role not in Membership.Role.values:
        raise Invalid("Unknown role.", field="role")
    updated = Membership.objects.filter(room=room, user_id=user_id).update(role=role)
    if not updated:
        raise NotMember("Not a member of this room.")


@transaction.atomic
def rename_room(*, room, name):
    name = clean_name(name)
    if not name:
        raise Invalid("name must not be empty.", field="name")
    if room.kind == Room.Kind.DIRECT:
        raise NotAllowed("A direct room has no name to change.")
    room.name = name
    room.save(update_fields=["name"])
    return room


@transaction.atomic
def delete_room(*, room):
    """Delete a room and its messages; every member's devices get room.left."""
    member_ids = list(Membership.objects.filter(room=room).values_list("user_id", flat=True))
    events.send_to_users_on_commit(member_ids, {"type": "room.left", "room": room.pk})
    room.delete()


@transaction.atomic
def post_message(*, room_id, sender, body, client_id=None, device=None):
    """Store a message with the room's next seq; return (message, created).

    A client_id already used by this sender in this room returns the first
    message and stores nothing. `device` is the sending device's channel: its
    copy arrives as message.ack, so message.new skips it.
    """
    body = clean_body(body)
    client_id = clean_client_id(client_id)
    # The row lock on the room orders its writers: seq never gaps or repeats,
    # and seq N is committed before seq N+1 is handed out.
    room = Room.objects.select_for_update().filter(pk=room_id).first()
    if room is None or not Membership.objects.filter(room_id=room_id, user_id=sender.pk).exists():
        raise NotMember("Not a member of this room.")
    if client_id is not None:
        first = (
            Message.objects.select_related("sender")
            .filter(room_id=room_id, sender_id=sender.pk, client_id=client_id)
            .first()
        )
        if first is not None:
            return first, False
    seq = room.last_seq + 1
    now = timezone.now()
    Room.objects.filter(pk=room_id).update(last_seq=seq, last_message_at=now)
    message = Message.objects.create(room_id=room_id, seq=seq, sender=sender, body=body, client_id=client_id)
    # One's own message is read.
    Membership.objects.filter(room_id=room_id, user_id=sender.pk, last_read_seq__lt=seq).update(last_read_seq=seq)
    events.send_to_room_on_commit(
        room_id, events.message_new(message), seq=seq, members_version=room.members_version, exclude=device
    )
    return message, True


@transaction.atomic
def mark_read(*, user, room_id, seq):
    """Move the user's read marker forward to seq (never back, never past the end)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise Invalid("seq must be a non-negative integer.", field="seq")
    membership = Membership.objects.select_related("room").filter(room_id=room_id, user_id=user.pk).first()
    if membership is None:
        raise NotMember("Not a member of this room.")
    seq = min(seq, membership.room.last_seq)
    moved = Membership.objects.filter(pk=membership.pk, last_read_seq__lt=seq).update(last_read_seq=seq)
    if moved:
        events.send_to_users_on_commit([user.pk], {"type": "read", "room": room_id, "seq": seq})
    return max(seq, membership.last_read_seq)


def relay_typing(*, user, room_id, device=None):
    """Tell the room's other members' devices that the user is typing."""
    if not Membership.objects.filter(room_id=room_id, user_id=user.pk).exists():
        raise NotMember("Not a member of this room.")
    event = {"type": "typing", "room": room_id, "user": events.user_data(user)}
    # No transaction: nothing is stored, so it goes out at once.
    get_channel_layer().publish_to_room(room_id, event, skip_users=(user.pk,))
