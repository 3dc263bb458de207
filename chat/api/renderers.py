"""Response rendering for the API."""

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer, which also renders text that has no UTF-8.

    An error message may quote the request (`"\\ud800" is not a valid
    choice.`), and JSON may carry an unpaired surrogate, escaped: written out
    as it is, it cannot be encoded and the refusal became a 500. Such a
    response is written with every non-ASCII character escaped instead;
    all others are unchanged.
    """

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


class AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True
