"""Refusals that the API and the WebSocket both turn into their own error shapes."""

from django.db import InterfaceError, OperationalError


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


# Database errors that mean "not now" rather than "wrong request": a locked
# SQLite file (past its busy timeout) or a dropped connection. The transaction
# has rolled back, so nothing was stored; the client may retry with the same
# client_id. The API answers 503 with Retry-After, the WebSocket an error
# frame with code "unavailable". Any other database error stays a bug (500).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
UNAVAILABLE_DETAIL = "The service is briefly unavailable; try again."
RETRY_AFTER_SECONDS = 1
