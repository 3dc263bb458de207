from django.urls import path, re_path, register_converter

from . import views


class IdConverter:
    """A database id: at most 18 digits, so it always fits a signed 64-bit column.

    A longer number matches no path here (and ends at the JSON 404 below),
    where `<int:…>` would pass it on to the database driver and fail there.
    """

    regex = "[0-9]{1,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(IdConverter, "chat_id")

app_name = "api"

urlpatterns = [
    path("auth/register/", views.RegisterView.as_view(), name="register"),
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("me/", views.MeView.as_view(), name="me"),
    path("users/", views.UserSearchView.as_view(), name="users"),
    path("rooms/", views.RoomListView.as_view(), name="rooms"),
    path("rooms/<chat_id:room_id>/", views.RoomDetailView.as_view(), name="room"),
    path("rooms/<chat_id:room_id>/members/", views.MemberListView.as_view(), name="members"),
    path("rooms/<chat_id:room_id>/members/<chat_id:user_id>/", views.MemberDetailView.as_view(), name="member"),
    path("rooms/<chat_id:room_id>/messages/", views.MessageListView.as_view(), name="messages"),
    path("rooms/<chat_id:room_id>/read/", views.ReadView.as_view(), name="read"),
    # Last: any other /api/…/ path is a JSON 404 too, not Django's HTML page.
    # Paths without the final slash stay unmatched, so APPEND_SLASH still works.
    re_path(r"^.*/$", views.NotFoundView.as_view()),
]
