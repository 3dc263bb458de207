"""Reads, and the access checks every entry point shares (API, WebSocket, pages)."""

from django.contrib.auth import get_user_model
from django.db.models import F

from . import events
from .errors import NotAllowed, NotMember
from .models import Membership, Message, Room

HISTORY_DEFAULT = 50
HISTORY_MAX = 200


def access_membership(*, user, room_id):
    """Return the user's membership of the room, with the room; NotMember otherwise."""
    try:
        return Membership.objects.select_related("room").get(room_id=room_id, user_id=user.pk)
    except (Membership.DoesNotExist, ValueError, TypeError):
        raise NotMember("Not a member of this room.") from None


def access_managed_room(*, user, room_id):
    """Return the membership if the user is the room's owner or an admin."""
    membership = access_membership(user=user, room_id=room_id)
    if not membership.can_manage:
        raise NotAllowed("Only the room's owner or admins may do this.")
    return membership


def memberships_of(user):
    """The user's memberships with their rooms, most recently active first."""
    return (
        Membership.objects.filter(user_id=user.pk)
        .select_related("room")
        .annotate(unread=F("room__last_seq") - F("last_read_seq"))
        .order_by(F("room__last_message_at").desc(nulls_last=True), "-room_id")
    )


def room_summaries(user):
    """The `rooms` list of the hello frame."""
    return [events.room_data(m) for m in memberships_of(user)]


def messages_page(*, room_id, after=None, before=None, limit=HISTORY_DEFAULT):
    """One page of history in ascending seq, and whether more lies beyond it."""
    qs = Message.objects.filter(room_id=room_id).select_related("sender")
    if after is not None:
        rows = list(qs.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return rows[:limit], len(rows) > limit
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = list(qs.order_by("-seq")[: limit + 1])
    has_more = len(rows) > limit
    return rows[:limit][::-1], has_more


def room_member_ids(room_id):
    """(members_version, member user ids): how the fan-out layer resolves a room."""
    version = Room.objects.filter(pk=room_id).values_list("members_version", flat=True).first()
    if version is None:
        return None, ()
    ids = Membership.objects.filter(room_id=room_id).values_list("user_id", flat=True)
    return version, tuple(ids)


def room_events_after(room_id, after_seq, limit=500):
    """(seq, message.new event) for the room's messages after a seq, ascending.

    The fan-out layer calls this to fill a gap it saw in a room's stream (a
    publish lost while Redis was away, or still in flight from another worker).
    """
    rows = (
        Message.objects.filter(room_id=room_id, seq__gt=after_seq)
        .select_related("sender")
        .order_by("seq")[:limit]
    )
    return [(m.seq, events.message_new(m)) for m in rows]


def search_users(*, prefix, limit=20):
    """Users whose name starts with the prefix, for adding members."""
    if not prefix:
        return []
    return list(
        get_user_model()
        .objects.filter(username__istartswith=prefix, is_active=True)
        .order_by("username")
        .only("id", "username")[:limit]
    )


def access_owned_room(*, user, room_id):
    """Return the membership if the user is the room's owner; NotAllowed for other members."""
    membership = access_membership(user=user, room_id=room_id)
    if membership.role != Membership.Role.OWNER:
        raise NotAllowed("Only the room's owner may do this.")
    return membership


def access_member_removal(*, user, room_id, user_id):
    """Return the caller's membership if it may remove that user from the room.

    Any member may leave; the owner and admins may remove others, but nobody
    removes the owner. The pair of a direct room never changes: a direct room left
    behind could not be found again by the one who left.
    """
    membership = access_membership(user=user, room_id=room_id)
    if membership.room.kind == Room.Kind.DIRECT:
        raise NotAllowed("Members of a direct room cannot change.")
    if user_id == user.pk:
        return membership
    if not membership.can_manage:
        raise NotAllowed("Only the room's owner or admins may remove other members.")
    if Membership.objects.filter(room_id=room_id, user_id=user_id, role=Membership.Role.OWNER).exists():
        raise NotAllowed("The owner can leave the room but not be removed.")
    return membership


def room_members(*, room_id):
    """The room's memberships with their users, by username."""
    return Membership.objects.filter(room_id=room_id).select_related("user").order_by("user__username", "user_id")
