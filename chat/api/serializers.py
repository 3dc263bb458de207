"""Request and response shapes of the HTTP API.

Responses are rendered by `chat.events`, the same functions that shape the
WebSocket frames, so a room or a message reads the same over both. Their
fields are declared here all the same: they are what /api/schema/ shows.

Request fields are strict about JSON types: DRF would turn `5` into "5" for
a CharField and "5" into 5 for an IntegerField, and a client sending the
wrong type has a bug it should hear about.
"""

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework import serializers

from .. import events, selectors, services
from ..models import Membership, Room

# The largest value of the bigint columns that hold ids and seqs: anything
# larger is refused here instead of overflowing in the database driver.
MAX_BIGINT = 2**63 - 1


class StrictCharField(serializers.CharField):
    """A JSON string, and nothing that merely converts to one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string of digits, a float or a boolean."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class UsernameField(StrictCharField):
    """A username as it will be stored: NFKC-normalised first, as Django's user
    model and sign-up form do, so that length, characters and uniqueness are
    checked on what is stored ("ＡＬＩＣＥ" is "ALICE", taken if "alice" is)."""

    def to_internal_value(self, data):
        return get_user_model().normalize_username(super().to_internal_value(data))


class UserIdsField(serializers.ListField):
    """A list of user ids, whose errors stay a flat list of messages.

    DRF reports a bad item as {"<index>": [...]}; the contract's error shape
    is {"field": ["message"]}, so the index goes into the message instead.
    """

    MAX_REPORTED = 10

    def __init__(self, **kwargs):
        super().__init__(child=StrictIntegerField(min_value=1), **kwargs)

    def run_child_validation(self, data):
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as error:
            messages = [
                f"Item {index}: {message}"
                for index, item_messages in error.detail.items()
                for message in item_messages
            ]
            raise serializers.ValidationError(messages[: self.MAX_REPORTED]) from None


# Accounts


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)

    def to_representation(self, instance):
        return events.user_data(instance)


class UserSearchQuerySerializer(serializers.Serializer):
    # CharField refuses NUL characters, which PostgreSQL could not compare.
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=150,
        help_text="The start of a username, any case; empty finds nobody.",
    )


class UserSearchSerializer(serializers.Serializer):
    results = UserSerializer(many=True, read_only=True)


class RegisterSerializer(serializers.Serializer):
    username = UsernameField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="150 characters or fewer: letters, digits and @/./+/-/_ only.",
    )
    password = StrictCharField(
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Checked by the site's password validators.",
    )

    def validate_username(self, value):
        # Case-insensitive, as on the sign-up page: "Alice" and "alice" would
        # be told apart by nobody reading a room.
        if get_user_model().objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("A user with that username already exists.")
        return value

    def validate(self, attrs):
        candidate = get_user_model()(username=attrs["username"])
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"password": list(error.messages)}) from None
        return attrs

    def create(self, validated_data):
        try:
            with transaction.atomic():
                return get_user_model().objects.create_user(**validated_data)
        except IntegrityError:
            # Someone took the name between the check and the insert.
            raise serializers.ValidationError(
                {"username": ["A user with that username already exists."]}
            ) from None


class RegisteredSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    token = serializers.CharField(read_only=True, help_text="Send as `Authorization: Token <token>`.")

    def to_representation(self, instance):
        return {**events.user_data(instance), "token": instance.auth_token.key}


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)


# Rooms


class RoomSerializer(serializers.Serializer):
    """A room as the caller sees it: `role` and `unread` are the caller's."""

    # Rendered from the caller's Membership, not from the Room.

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True, help_text="Empty for direct rooms.")
    kind = serializers.ChoiceField(choices=Room.Kind.choices, read_only=True)
    role = serializers.ChoiceField(choices=Membership.Role.choices, read_only=True)
    last_seq = serializers.IntegerField(read_only=True, help_text="The seq of the room's latest message; 0 when empty.")
    unread = serializers.IntegerField(read_only=True, help_text="Messages after the caller's read marker.")
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance):
        return events.room_data(instance)


class RoomCreateSerializer(serializers.Serializer):
    name = StrictCharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=services.MAX_NAME_CHARS,
        help_text="Required for a group room; ignored for a direct room.",
    )
    kind = serializers.ChoiceField(choices=Room.Kind.choices, default=Room.Kind.GROUP)
    members = UserIdsField(
        max_length=services.MAX_MEMBERS_PER_CALL,
        required=False,
        default=list,
        help_text="User ids besides the creator; exactly one for a direct room.",
    )

    def validate(self, attrs):
        if attrs["kind"] == Room.Kind.DIRECT and len(attrs["members"]) != 1:
            raise serializers.ValidationError(
                {"members": ["A direct room takes exactly one other member."]}
            )
        return attrs


class RoomRenameSerializer(serializers.Serializer):
    # Optional, as PATCH fields are: an empty PATCH changes nothing.
    name = StrictCharField(required=False, max_length=services.MAX_NAME_CHARS)


# Members


class MemberSerializer(serializers.Serializer):
    # `online` is looked up once per page: the context's "online" is the set of
    # user ids with a connected device.

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    role = serializers.ChoiceField(choices=Membership.Role.choices, read_only=True)
    online = serializers.BooleanField(read_only=True, help_text="Has a connected device.")

    def to_representation(self, instance):
        return {
            **events.user_data(instance.user),
            "role": instance.role,
            "online": instance.user_id in self.context["online"],
        }


class AddMembersSerializer(serializers.Serializer):
    users = UserIdsField(max_length=services.MAX_MEMBERS_PER_CALL, allow_empty=False)


class AddedSerializer(serializers.Serializer):
    added = serializers.IntegerField(read_only=True, help_text="How many were not members before.")


# Messages


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    room = serializers.IntegerField(read_only=True)
    seq = serializers.IntegerField(read_only=True)
    sender = UserSerializer(read_only=True, allow_null=True, help_text="null once the sender's account is gone.")
    body = serializers.CharField(read_only=True)
    client_id = serializers.CharField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance):
        return events.message_data(instance)


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, read_only=True)
    has_more = serializers.BooleanField(
        read_only=True, help_text="More messages lie beyond this page, in the direction asked for."
    )


class HistoryQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_BIGINT, help_text="Messages with a higher seq, oldest first."
    )
    before = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_BIGINT, help_text="The latest messages with a lower seq."
    )
    limit = serializers.IntegerField(
        required=False,
        default=selectors.HISTORY_DEFAULT,
        min_value=1,
        max_value=selectors.HISTORY_MAX,
    )

    def validate(self, attrs):
        if "after" in attrs and "before" in attrs:
            raise serializers.ValidationError(
                {"before": ["Give either after or before, not both."]}
            )
        return attrs


class MessageCreateSerializer(serializers.Serializer):
    body = StrictCharField(
        max_length=services.MAX_BODY_CHARS,
        help_text=f"1 to {services.MAX_BODY_CHARS} characters after trimming.",
    )
    client_id = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        # An idempotency key is compared exactly, as over the WebSocket.
        trim_whitespace=False,
        max_length=services.MAX_CLIENT_ID_CHARS,
        help_text="The sender's own id for this message: a repeat returns the first message.",
    )


class ReadSerializer(serializers.Serializer):
    seq = StrictIntegerField(min_value=0, help_text="The last seq read; the marker never moves back.")
