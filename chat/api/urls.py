# The REST API (issue 5) fills this in.
urlpatterns = []
