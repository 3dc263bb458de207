"""The HTTP API: parse with a serializer, check access and act through
`chat.selectors` / `chat.services`, reply. See the API contract."""

import logging

from channels.layers import get_channel_layer
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from .. import selectors, services
from ..errors import (
    DATABASE_UNAVAILABLE,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_DETAIL,
    ChatError,
    NotAllowed,
    NotMember,
)
from ..models import Room
from . import serializers as s
from .parsers import JSONParser
from .throttles import ScopedThrottle

ROOM_ID = OpenApiParameter("room_id", OpenApiTypes.INT, OpenApiParameter.PATH)
NOT_MEMBER = OpenApiResponse(description="No such room, or the caller is not a member: the two look the same.")
NOT_ALLOWED = OpenApiResponse(description="The caller's role in the room does not allow this.")
INVALID = OpenApiResponse(description='Validation failed: `{"field": ["message"]}`.')

logger = logging.getLogger(__name__)


class Unavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = UNAVAILABLE_DETAIL
    default_code = "unavailable"
    wait = RETRY_AFTER_SECONDS  # DRF's exception handler sends it as Retry-After


def validated(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def api_error(error):
    """The DRF exception for a refusal from a selector or service."""
    if isinstance(error, NotMember):
        # 404, not 403: whether the room exists is none of a non-member's business.
        return exceptions.NotFound(error.detail)
    if isinstance(error, NotAllowed):
        return exceptions.PermissionDenied(error.detail)
    field = error.field or api_settings.NON_FIELD_ERRORS_KEY
    return exceptions.ValidationError({field: [error.detail]})


class ChatView(APIView):
    # Refusals from the chat core become DRF errors here, so every view
    # answers them alike. JSON only: the request fields are typed strictly,
    # which form data (all strings) could never satisfy.
    parser_classes = (JSONParser,)

    def handle_exception(self, exc):
        if isinstance(exc, ChatError):
            exc = api_error(exc)
        elif isinstance(exc, DATABASE_UNAVAILABLE):
            # A locked SQLite file or a dropped connection is transient and rolled
            # back: 503 + Retry-After says "retry (same client_id)", where a 500
            # would say "bug". Django discards the broken connection at the end of
            # the request (close_old_connections on request_finished).
            logger.warning("database unavailable during %s %s: %s", self.request.method, self.request.path, exc)
            exc = Unavailable()
        return super().handle_exception(exc)


class ResultsPagination(PageNumberPagination):
    """`{"results": [...], "next": url or null}`, nothing more: the contract's list shape."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "format": "uri"},
            },
        }


# Accounts


class RegisterView(ChatView):
    # No authentication: a session cookie would only bring CSRF checks here.
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (ScopedThrottle,)
    throttle_scope = "auth"

    @extend_schema(
        operation_id="register",
        request=s.RegisterSerializer,
        responses={201: s.RegisteredSerializer, 400: INVALID},
        auth=[],
    )
    def post(self, request):
        """Create an account; its API token comes with it."""
        serializer = s.RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.save()
        return Response(s.RegisteredSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenView(ObtainAuthToken):
    """DRF's own token view (400 on bad credentials), throttled and with no session."""

    authentication_classes = ()
    throttle_classes = (ScopedThrottle,)
    throttle_scope = "auth"
    # DRF's own list, with the JSON parser that refuses too deep nesting with a 400.
    parser_classes = (FormParser, MultiPartParser, JSONParser)

    @extend_schema(
        operation_id="obtain_token",
        responses={200: s.TokenSerializer, 400: INVALID},
        auth=[],
    )
    def post(self, request, *args, **kwargs):
        """Exchange a username and password for the user's API token."""
        return super().post(request, *args, **kwargs)


class MeView(ChatView):
    @extend_schema(operation_id="me", responses=s.UserSerializer)
    def get(self, request):
        """The caller."""
        return Response(s.UserSerializer(request.user).data)


class UserSearchView(ChatView):
    @extend_schema(
        operation_id="users_search",
        parameters=[s.UserSearchQuerySerializer],
        responses={200: s.UserSearchSerializer, 400: INVALID},
    )
    def get(self, request):
        """Find users by the start of their username (at most 20), to add them to rooms."""
        query = validated(s.UserSearchQuerySerializer, request.query_params)
        users = selectors.search_users(prefix=query["search"])
        return Response(s.UserSearchSerializer({"results": users}).data)


# Rooms


class RoomListView(ChatView):
    pagination_class = ResultsPagination

    @extend_schema(operation_id="rooms_list", responses=s.RoomSerializer(many=True))
    def get(self, request):
        """The rooms the caller belongs to, most recently active first."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.memberships_of(request.user), request, view=self)
        return paginator.get_paginated_response(s.RoomSerializer(page, many=True).data)

    @extend_schema(
        operation_id="rooms_create",
        request=s.RoomCreateSerializer,
        responses={
            201: s.RoomSerializer,
            200: OpenApiResponse(s.RoomSerializer, description="The existing direct room of this pair."),
            400: INVALID,
        },
    )
    def post(self, request):
        """Create a group room owned by the caller, or find or create a direct room with one other user."""
        data = validated(s.RoomCreateSerializer, request.data)
        if data["kind"] == Room.Kind.DIRECT:
            room, created = services.get_or_create_direct_room(user=request.user, other_id=data["members"][0])
        else:
            room = services.create_group_room(creator=request.user, name=data["name"], member_ids=data["members"])
            created = True
        membership = selectors.access_membership(user=request.user, room_id=room.pk)
        return Response(
            s.RoomSerializer(membership).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema(parameters=[ROOM_ID])
class RoomDetailView(ChatView):
    @extend_schema(operation_id="rooms_retrieve", responses={200: s.RoomSerializer, 404: NOT_MEMBER})
    def get(self, request, room_id):
        """One of the caller's rooms."""
        membership = selectors.access_membership(user=request.user, room_id=room_id)
        return Response(s.RoomSerializer(membership).data)

    @extend_schema(
        operation_id="rooms_rename",
        request=s.RoomRenameSerializer,
        responses={200: s.RoomSerializer, 400: INVALID, 403: NOT_ALLOWED, 404: NOT_MEMBER},
    )
    def patch(self, request, room_id):
        """Rename a group room (owner or admin)."""
        membership = selectors.access_managed_room(user=request.user, room_id=room_id)
        data = validated(s.RoomRenameSerializer, request.data)
        if "name" in data:
            services.rename_room(room=membership.room, name=data["name"])
        return Response(s.RoomSerializer(membership).data)

    @extend_schema(operation_id="rooms_destroy", responses={204: None, 403: NOT_ALLOWED, 404: NOT_MEMBER})
    def delete(self, request, room_id):
        """Delete a room and all its messages (owner only)."""
        membership = selectors.access_owned_room(user=request.user, room_id=room_id)
        services.delete_room(room=membership.room)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Members


@extend_schema(parameters=[ROOM_ID])
class MemberListView(ChatView):
    pagination_class = ResultsPagination

    @extend_schema(operation_id="members_list", responses={200: s.MemberSerializer(many=True), 404: NOT_MEMBER})
    def get(self, request, room_id):
        """The room's members by username, and whether each is online."""
        selectors.access_membership(user=request.user, room_id=room_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.room_members(room_id=room_id), request, view=self)
        online = get_channel_layer().online_user_ids([m.user_id for m in page])
        data = s.MemberSerializer(page, many=True, context={"online": online}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="members_add",
        request=s.AddMembersSerializer,
        responses={201: s.AddedSerializer, 400: INVALID, 403: NOT_ALLOWED, 404: NOT_MEMBER},
    )
    def post(self, request, room_id):
        """Add users to a group room (owner or admin); those already in it are skipped."""
        membership = selectors.access_managed_room(user=request.user, room_id=room_id)
        data = validated(s.AddMembersSerializer, request.data)
        added = services.add_members(room=membership.room, user_ids=data["users"])
        return Response(s.AddedSerializer({"added": added}).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[ROOM_ID, OpenApiParameter("user_id", OpenApiTypes.INT, OpenApiParameter.PATH)])
class MemberDetailView(ChatView):
    @extend_schema(
        operation_id="members_remove",
        responses={
            204: None,
            403: NOT_ALLOWED,
            404: OpenApiResponse(description="No such room, the caller is not in it, or the user is not in it."),
        },
    )
    def delete(self, request, room_id, user_id):
        """Remove a member (owner or admin), or leave the room (anyone, with one's own id)."""
        membership = selectors.access_member_removal(user=request.user, room_id=room_id, user_id=user_id)
        services.remove_member(room=membership.room, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Messages


@extend_schema(parameters=[ROOM_ID])
class MessageListView(ChatView):
    throttle_scope = "message"

    def get_throttles(self):
        throttles = super().get_throttles()
        # Only sending counts against the "message" rate; reading history does not.
        if self.request.method == "POST":
            throttles.append(ScopedThrottle())
        return throttles

    @extend_schema(
        operation_id="messages_list",
        parameters=[s.HistoryQuerySerializer],
        responses={200: s.MessagePageSerializer, 400: INVALID, 404: NOT_MEMBER},
        description=(
            "One page of the room's history, in ascending seq. `after`: the messages with a "
            "higher seq, oldest first. `before`: the latest ones with a lower seq. Neither: the latest."
        ),
    )
    def get(self, request, room_id):
        """One page of the room's history, in ascending seq."""
        selectors.access_membership(user=request.user, room_id=room_id)
        query = validated(s.HistoryQuerySerializer, request.query_params)
        messages, has_more = selectors.messages_page(room_id=room_id, **query)
        return Response(s.MessagePageSerializer({"results": messages, "has_more": has_more}).data)

    @extend_schema(
        operation_id="messages_send",
        request=s.MessageCreateSerializer,
        responses={
            201: s.MessageSerializer,
            200: OpenApiResponse(s.MessageSerializer, description="The first message sent with this client_id."),
            400: INVALID,
            404: NOT_MEMBER,
            429: OpenApiResponse(description="Sending too fast."),
            503: OpenApiResponse(description="The database is briefly unavailable; nothing was stored. "
                                 "Retry after `Retry-After` seconds with the same client_id."),
        },
    )
    def post(self, request, room_id):
        """Send a message; every device of every member receives it as over the WebSocket."""
        selectors.access_membership(user=request.user, room_id=room_id)
        data = validated(s.MessageCreateSerializer, request.data)
        message, created = services.post_message(room_id=room_id, sender=request.user, **data)
        return Response(
            s.MessageSerializer(message).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema(parameters=[ROOM_ID])
class ReadView(ChatView):
    @extend_schema(
        operation_id="rooms_read",
        request=s.ReadSerializer,
        responses={204: None, 400: INVALID, 404: NOT_MEMBER},
    )
    def post(self, request, room_id):
        """Move the caller's read marker forward to seq; it never moves back."""
        selectors.access_membership(user=request.user, room_id=room_id)
        data = validated(s.ReadSerializer, request.data)
        services.mark_read(user=request.user, room_id=room_id, seq=data["seq"])
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(exclude=True)
class NotFoundView(APIView):
    # Errors are JSON everywhere under /api/, also for paths that name nothing.
    def initial(self, request, *args, **kwargs):
        raise exceptions.NotFound()
