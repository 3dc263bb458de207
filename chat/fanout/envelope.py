"""What travels over Level 1: one envelope per event, encoded once.

An envelope is a small dict serialised with channels-redis' msgpack
serialiser. Target user ids are packed as zlib-compressed deltas, so a
room of 1,000 members costs a few hundred bytes rather than kilobytes.
"""

import zlib
from array import array
from itertools import accumulate

from channels_redis.serializers import registry

_serializer = registry.get_serializer("msgpack")

# Envelope kinds.
ROOM = "room"  # a frame for the members of a room, ordered by seq
USERS = "users"  # a frame for every device of some users
CHANNEL = "chan"  # a Channels message for one channel
GROUP = "group"  # a Channels message for the local members of a group
CLOSE = "close"  # close the devices of some users that authenticated with one credential


def pack_ids(ids):
    """Pack user ids as compressed ascending deltas."""
    deltas = array("Q", sorted(set(ids)))
    for i in range(len(deltas) - 1, 0, -1):
        deltas[i] -= deltas[i - 1]
    return zlib.compress(deltas.tobytes(), 1)


def unpack_ids(packed):
    deltas = array("Q")
    deltas.frombytes(zlib.decompress(packed))
    return accumulate(deltas)


def encode(envelope):
    return _serializer.serialize(envelope)


def decode(data):
    return _serializer.deserialize(data)


def shard_of(key, shards):
    """A stable shard index for a room or a name: the same on every worker."""
    if shards == 1:
        return 0
    return zlib.crc32(str(key).encode()) % shards
