# Users are Django's own; their API tokens are DRF's (see signals).
