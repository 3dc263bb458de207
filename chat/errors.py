"""Refusals that the API and the WebSocket both turn into their own error shapes."""


class ChatError(Exception):
    """A request refused for a reason the client can act on."""

    code = "invalid"

    def __init__(self, detail="", *, field=None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


class Invalid(ChatError):
    code = "invalid"


class TooLarge(ChatError):
    code = "too_large"


class NotMember(ChatError):
    """The room does not exist or the user is not in it: the two look the same."""

    code = "not_member"


class NotAllowed(ChatError):
    """A member asked for something only the room's owner or admins may do."""

    code = "not_allowed"
