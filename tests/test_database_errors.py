"""Database errors during a send: a clear error for the sender, nothing half-stored, a retry works.

Real workers on a real database: a SQLite file locked by another writer past
the busy timeout, and a PostgreSQL server that drops the workers' connections.
"""

import asyncio
import contextlib
import sqlite3

import pytest

from tests.live import Device, Service, eventually

pytestmark = pytest.mark.live

BUSY_TIMEOUT = 1  # seconds a worker waits for SQLite's write lock


@pytest.fixture
def sqlite_service(tmp_path):
    service = Service(tmp_path, workers=2, extra_env={"DATABASE_BUSY_TIMEOUT": str(BUSY_TIMEOUT)}).start()
    yield service
    service.stop()


@pytest.fixture
def postgres_service(tmp_path, postgres_url):
    service = Service(tmp_path, workers=2, extra_env={"DATABASE_URL": postgres_url})
    service.manage("flush", "--no-input")  # the cluster is shared by the session
    service.start()
    yield service
    service.stop()


@contextlib.contextmanager
def write_lock(path):
    """Hold SQLite's write lock, as another process's long write transaction would."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.rollback()
        connection.close()


def terminate_backends(url):
    """Drop every other connection to the database, as a failover or a DBA would; return how many."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


async def reply_to(device, client_id, timeout=30):
    """The device's answer to its message.send: the ack or the error with this ref."""
    while True:
        frame = await device.next_frame(timeout=timeout)
        if frame["type"] == "message.ack" and frame["client_id"] == client_id:
            return frame
        if frame["type"] == "error" and frame["ref"] == client_id:
            return frame


async def send(device, room, client_id):
    await device.send({"type": "message.send", "room": room, "body": client_id, "client_id": client_id})
    return await reply_to(device, client_id)


async def still_open(device):
    await device.send({"type": "ping"})
    await device.next_frame("pong")
    return True


def stored_seqs(service, token, room):
    status, page = service.api("GET", f"/api/rooms/{room}/messages/?after=0&limit=200", token)
    assert status == 200
    status, detail = service.api("GET", f"/api/rooms/{room}/", token)
    assert status == 200
    return [m["seq"] for m in page["results"]], detail["last_seq"]


def assert_clean_logs(service):
    for worker in service.workers:
        log = worker.log_text()
        assert "Traceback" not in log, log[-3000:]
        assert "Internal Server Error" not in log, log[-3000:]


async def test_a_locked_sqlite_database_gets_senders_503_or_unavailable_and_a_retry_stores_once(sqlite_service):
    service = sqlite_service
    seeded = service.seed(2, "lock", room="locked")
    room, (alice, bob) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    alices = await Device.connect(w0, alice["token"])
    bobs = await Device.connect(w1, bob["token"])
    assert (await send(alices, room, "before the lock"))["message"]["seq"] == 1
    path = f"/api/rooms/{room}/messages/"

    with write_lock(service.workdir / "db.sqlite3"):
        # Both wait out the busy timeout at the same time, on different workers.
        http = asyncio.ensure_future(
            asyncio.to_thread(service.call, "POST", path, bob["token"], {"body": "bob", "client_id": "bob-1"},
                              worker=1, timeout=30)
        )
        refused = await send(alices, room, "alice-1")
        status, headers, body = await http

    assert status == 503, body
    assert list(body) == ["detail"] and "unavailable" in body["detail"]
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "application/json"
    assert refused == {"type": "error", "code": "unavailable", "detail": refused["detail"], "ref": "alice-1"}
    assert "Traceback" not in refused["detail"] and refused["detail"]
    assert await still_open(alices)

    # Nothing was stored by the refused sends, so the same client_ids now store new messages, with no gap.
    assert stored_seqs(service, alice["token"], room) == ([1], 1)
    status, message = service.api("POST", path, bob["token"], {"body": "bob", "client_id": "bob-1"}, worker=1)
    assert (status, message["seq"]) == (201, 2)
    assert (await send(alices, room, "alice-1"))["message"]["seq"] == 3
    assert [f["message"]["seq"] for f in await bobs.collect("message.new", 3)] == [1, 2, 3]
    assert stored_seqs(service, alice["token"], room) == ([1, 2, 3], 3)
    # And once: repeating a client_id now returns the stored message.
    assert service.api("POST", path, bob["token"], {"body": "bob", "client_id": "bob-1"}, worker=0) == (200, message)

    assert_clean_logs(service)
    assert "database unavailable" in w0.log_text() and "database unavailable" in w1.log_text()
    for device in (alices, bobs):
        await device.close()


async def send_until_stored(device, room, client_id):
    """Send; on `unavailable`, send again with the same client_id. Return the outcomes and the ack."""
    outcomes = []
    for _ in range(3):
        reply = await send(device, room, client_id)
        outcomes.append(reply["type"] if reply["type"] == "message.ack" else reply["code"])
        if reply["type"] == "message.ack":
            return outcomes, reply["message"]
    return outcomes, None


def post_until_stored(service, token, room, client_id, worker):
    statuses = []
    for _ in range(3):
        status, headers, body = service.call(
            "POST", f"/api/rooms/{room}/messages/", token, {"body": client_id, "client_id": client_id}, worker=worker
        )
        statuses.append(status)
        if status == 503:
            assert headers["Retry-After"] == "1"
            continue
        return statuses, body
    return statuses, None


async def test_a_dropped_postgres_connection_never_gives_a_500_and_the_next_send_or_its_retry_succeeds(
    postgres_service, postgres_url
):
    service = postgres_service
    seeded = service.seed(2, "pgdrop", room="dropped")
    room, (alice, bob) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    alices = await Device.connect(w0, alice["token"])
    bobs = await Device.connect(w1, bob["token"])
    assert (await send(alices, room, "before"))["message"]["seq"] == 1
    assert service.api("POST", f"/api/rooms/{room}/messages/", bob["token"], {"body": "b"}, worker=1)[0] == 201

    for round_ in range(2):
        # Both workers' connections (the WebSocket's database thread at least) are cut.
        assert terminate_backends(postgres_url) >= 2
        outcomes, acked = await send_until_stored(alices, room, f"alice after drop {round_}")
        statuses, posted = await asyncio.to_thread(
            post_until_stored, service, bob["token"], room, f"bob after drop {round_}", 1
        )
        # Django reconnects (health checks), or says "unavailable" once and the retry works.
        assert outcomes in (["message.ack"], ["unavailable", "message.ack"]), outcomes
        assert statuses in ([201], [503, 201]), statuses
        assert acked is not None and posted is not None
        assert await still_open(alices)
    print(f"\npostgres drop: websocket outcomes {outcomes}, http statuses {statuses}")

    # Bob's device gets Alice's messages and his own HTTP posts, all in order, once.
    assert [f["message"]["seq"] for f in await bobs.collect("message.new", 6)] == [1, 2, 3, 4, 5, 6]
    seqs, last_seq = stored_seqs(service, alice["token"], room)
    assert seqs == [1, 2, 3, 4, 5, 6] and last_seq == 6
    assert_clean_logs(service)
    for device in (alices, bobs):
        await device.close()


async def test_catching_up_after_a_redis_outage_survives_a_dropped_postgres_connection(postgres_service, postgres_url):
    # The fan-out reads missed messages back from the database on a pool thread
    # of its own; a connection dropped there must be replaced, not kept broken.
    service = postgres_service
    seeded = service.seed(2, "pgcatch", room="catch-up")
    room, (alice, bob) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    alices = await Device.connect(w0, alice["token"])
    bobs = await Device.connect(w1, bob["token"])
    assert (await send(alices, room, "live"))["message"]["seq"] == 1
    await bobs.collect("message.new", 1)

    for n in range(2, 5):
        service.redis.stop()
        _, acked = await send_until_stored(alices, room, f"while redis is away {n}")
        assert acked["seq"] == n
        service.redis.start()
        # Read back from the database once the link is up again: Bob is sent it without another message.
        await eventually(lambda: w1.health()["redis"] == "up", timeout=10, what="worker 1 to resubscribe")
        assert [f["message"]["seq"] for f in await bobs.collect("message.new", n, timeout=15)] == list(range(1, n + 1))
        assert terminate_backends(postgres_url) >= 1

    assert w1.health()["counters"]["backfills"] >= 3
    assert_clean_logs(service)
    for device in (alices, bobs):
        await device.close()
