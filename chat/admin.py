"""Room management. Every change goes through chat.services, as the API's do,
so admin edits fan out room.joined / room.left like any other."""

from channels.layers import get_channel_layer
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html_join

from . import selectors, services
from .models import Membership, Message, Room

LATEST_MESSAGES = 20


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    fields = ["user", "role", "joined_at", "last_read_seq"]
    readonly_fields = ["joined_at", "last_read_seq"]
    autocomplete_fields = ["user"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "member_count", "last_message_at", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    fields = ["name", "kind", "created_by", "created_at", "last_seq", "members_online", "latest_messages"]
    readonly_fields = ["kind", "created_by", "created_at", "last_seq", "members_online", "latest_messages"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(ordering="member_count")
    def member_count(self, room):
        return room.member_count

    @admin.display(description="Online now")
    def members_online(self, room):
        """How many members have a device connected to any worker (the layer's device registry)."""
        if room.pk is None:
            return "—"
        _, member_ids = selectors.room_member_ids(room.pk)
        online = get_channel_layer().online_user_ids(member_ids)
        return f"{len(online)} of {len(member_ids)} members"

    @admin.display(description="Latest messages")
    def latest_messages(self, room):
        if room.pk is None:
            return "—"
        rows = Message.objects.filter(room=room).select_related("sender").order_by("-seq")[:LATEST_MESSAGES]
        return format_html_join(
            "",
            "<p>#{} <b>{}</b>: {}</p>",
            ((m.seq, m.sender.username if m.sender else "(deleted)", m.body[:200]) for m in rows),
        ) or "—"

    def save_model(self, request, obj, form, change):
        if change:
            services.rename_room(room=obj, name=obj.name)
        else:
            room = services.create_group_room(creator=request.user, name=obj.name)
            obj.pk = room.pk
            obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        room = form.instance
        formset.save(commit=False)
        for membership in formset.deleted_objects:
            services.remove_member(room=room, user_id=membership.user_id)
        for membership in formset.new_objects:
            services.add_members(room=room, user_ids=[membership.user_id], role=membership.role)
        for membership, _ in formset.changed_objects:
            services.set_role(room=room, user_id=membership.user_id, role=membership.role)

    def delete_model(self, request, obj):
        services.delete_room(room=obj)

    def delete_queryset(self, request, queryset):
        for room in queryset:
            services.delete_room(room=room)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "sender", "body_start", "created_at"]
    search_fields = ["body", "sender__username"]
    list_select_related = ["room", "sender"]
    readonly_fields = ["room", "seq", "sender", "body", "client_id", "created_at"]

    @admin.display(description="body")
    def body_start(self, message):
        return message.body[:80]

    # The history is what devices resume from: the admin reads it, never rewrites it.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
