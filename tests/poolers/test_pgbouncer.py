"""PgBouncer in front of pg_credits, checked for real: Debian's pgbouncer (1.18, older than
1.21, so without prepared-statement support) in transaction mode (and once in statement
mode) before the test cluster, driven with psycopg 3. Each test is one claim of the
README's "Drivers and poolers" section. One server connection per pool, so that clients
share it the way a busy pooler makes them share."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

DATABASE = "t_pgbouncer"
UPSTREAM = os.environ.get("PGPORT", "28815")


@contextlib.contextmanager
def pgbouncer(mode, port):
    """A pgbouncer on 127.0.0.1:`port` in `mode`, with one server connection per pool."""
    folder = tempfile.mkdtemp(prefix="pg_credits_pgbouncer_")
    as_root = os.geteuid() == 0
    with open(f"{folder}/users.txt", "w") as users:
        users.write('"postgres" ""\n')
    with open(f"{folder}/pgbouncer.ini", "w") as config:
        config.write(f"""[databases]
* = host=127.0.0.1 port={UPSTREAM}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = {mode}
default_pool_size = 1
max_client_conn = 20
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
""")
    if as_root:  # pgbouncer refuses to run as root
        shutil.chown(folder, "postgres")
        for name in ("users.txt", "pgbouncer.ini"):
            shutil.chown(f"{folder}/{name}", "postgres")
    command = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", f"{folder}/pgbouncer.ini"]
    process = subprocess.Popen(["runuser", "-u", "postgres", "--", *command] if as_root else command)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "pgbouncer exited: " + open(f"{folder}/pgbouncer.log").read()
                assert time.monotonic() < deadline, "pgbouncer did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def through(port, **options):
    return psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=DATABASE, autocommit=True, **options)


@pytest.fixture(scope="module")
def bouncer():
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE} TEMPLATE template0")
    with psycopg.connect(dbname=DATABASE, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_credits")
        conn.execute("SELECT credits.create_account('pooled', 5, low_balance_threshold => 3)")
    with pgbouncer("transaction", 28897) as port:
        yield port


def test_the_402_contract_passes_through_unchanged(bouncer):
    with through(bouncer, prepare_threshold=None) as conn:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("SELECT credits.charge('pooled', 100)")
    assert refused.value.sqlstate == "PT402"
    payload = json.loads(refused.value.diag.message_detail)
    assert (payload["name"], payload["balance"], payload["shortfall"]) == ("InsufficientBalanceError", "5", "95")


def test_server_side_prepared_statements_need_prepare_threshold_none(bouncer):
    # psycopg prepares a statement on the server after prepare_threshold executions; with
    # two clients on one server connection, the names collide or vanish.
    failures = []
    with through(bouncer, prepare_threshold=0) as one, through(bouncer, prepare_threshold=0) as two:
        for client in (one, two, one, two):
            try:
                client.execute("SELECT credits.balance(%s)", ("pooled",)).fetchone()
            except psycopg.Error as error:
                failures.append(error.sqlstate)
    assert failures, "server-side prepared statements broke behind a transaction-mode pooler"
    with through(bouncer, prepare_threshold=None) as one, through(bouncer, prepare_threshold=None) as two:
        for client in (one, two, one, two):
            assert client.execute("SELECT credits.balance(%s)", ("pooled",)).fetchone()[0] == 5


def test_a_session_set_of_error_style_leaks_to_other_clients_and_set_local_does_not(bouncer):
    with through(bouncer, prepare_threshold=None) as setter, through(bouncer, prepare_threshold=None) as victim:
        setter.execute("SET credits.error_style = 'postgrest'")
        with pytest.raises(psycopg.Error) as leaked:
            victim.execute("SELECT credits.charge('pooled', 100)")
        assert leaked.value.sqlstate == "PGRST", "the other client's session setting reached this one"
        setter.execute("RESET credits.error_style")
        with setter.transaction():
            setter.execute("SET LOCAL credits.error_style = 'postgrest'")
        with pytest.raises(psycopg.Error) as contained:
            victim.execute("SELECT credits.charge('pooled', 100)")
        assert contained.value.sqlstate == "PT402", "SET LOCAL ended with its transaction"


def test_listen_does_not_work_but_the_events_table_does(bouncer):
    with through(bouncer, prepare_threshold=None) as listener, through(bouncer, prepare_threshold=None) as charger:
        listener.execute("LISTEN credits_low_balance")
        charger.execute("SELECT credits.charge('pooled', 3)")
        received = list(listener.notifies(timeout=1.0, stop_after=1))
        assert received == [], "LISTEN through a transaction-mode pooler hears nothing"
        events = charger.execute("SELECT payload->>'balance' FROM credits.events WHERE account = 'pooled'").fetchall()
        assert events == [("2",)], "the alert is in credits.events"


def test_statement_mode_refuses_multi_statement_transactions(bouncer):
    with pgbouncer("statement", 28898) as port, through(port, prepare_threshold=None) as conn:
        assert conn.execute("SELECT credits.balance('pooled')").fetchone()[0] is not None
        with pytest.raises(psycopg.Error, match="transaction blocks not allowed"):
            with conn.transaction():
                conn.execute("SELECT credits.charge('pooled', 1)")
                conn.execute("SELECT 1")
