"""Request parsing for the API."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, also refusing JSON nested too deep to parse.

    Python's decoder gives up on arrays or objects nested some thousand deep
    with RecursionError, which DRF does not catch: without this a 2.5 MB body
    of "[[[[…" is a 500 instead of a 400.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
