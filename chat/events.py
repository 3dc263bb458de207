"""Events: the frames devices receive, and their publication after commit.

Events are plain dicts with a "type", shaped exactly as the WebSocket section
of the API contract. They are published only once the transaction that
caused them has committed, so no device ever sees something that was rolled
back.
"""

from functools import partial

from channels.layers import get_channel_layer
from django.db import transaction


def user_data(user):
    return {"id": user.pk, "username": user.username}


def message_data(message):
    sender = message.sender
    return {
        "id": message.pk,
        "room": message.room_id,
        "seq": message.seq,
        "sender": user_data(sender) if sender else None,
        "body": message.body,
        "client_id": message.client_id,
        "created_at": message.created_at.isoformat(),
    }


def room_data(membership, *, unread=None):
    room = membership.room
    if unread is None:
        unread = getattr(membership, "unread", room.last_seq - membership.last_read_seq)
    return {
        "id": room.pk,
        "name": room.name,
        "kind": room.kind,
        "role": membership.role,
        "last_seq": room.last_seq,
        "unread": max(unread, 0),
        "created_at": room.created_at.isoformat(),
    }


def message_new(message):
    return {"type": "message.new", "message": message_data(message)}


def send_to_room_on_commit(room_id, event, *, seq=None, members_version=None, exclude=None):
    """Publish the event to every device of the room's members once committed."""
    layer = get_channel_layer()
    transaction.on_commit(
        partial(
            layer.publish_to_room,
            room_id,
            event,
            seq=seq,
            members_version=members_version,
            exclude=exclude,
        )
    )


def send_to_users_on_commit(user_ids, event, *, exclude=None):
    """Publish the event to every device of these users once committed."""
    layer = get_channel_layer()
    transaction.on_commit(partial(layer.publish_to_users, list(user_ids), event, exclude=exclude))


def close_devices_on_commit(user_id, credential, code):
    """Close the user's devices that authenticated with this credential, once committed."""
    layer = get_channel_layer()
    transaction.on_commit(partial(layer.close_devices, user_id, credential, code))
