from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("chat.api.urls")),
    path("", include("chat.urls")),
]

# Used only with DEBUG off (DJANGO_DEBUG=0); with it on, Django shows its debug page.
handler500 = "chat.views.server_error"
