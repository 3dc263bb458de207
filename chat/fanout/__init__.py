"""The fan-out: how one stored event reaches every device of its target users.

Level 1, `redis_link`: one PUBLISH per event reaches every worker process
(or, with no Redis configured, a direct hand-over inside the one process).
Level 2, `local`: each worker finds its own devices of the target users and
puts the frame, encoded once, in each device's bounded outbox (`devices`),
without awaiting any socket. `layer` ties both into a Channels layer.
"""
