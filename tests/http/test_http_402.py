"""The HTTP 402 contract, end to end: each example service (Rust, Python, Node.js) runs
against the test cluster and is driven over loopback by a real HTTP client."""
import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "t_http"
MESSAGE = "Account balance not enough to run this query, please recharge."
SERVICES = {
    "rust": (["examples/http-service/target/debug/credits-http-service"], 8402),
    "python": ([str(ROOT / "target/venv/bin/python"), "examples/python/app.py", "8403"], 8403),
    "node": (["node", "examples/node/app.js", "8404"], 8404),
}


@pytest.fixture(scope="module")
def database():
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE} TEMPLATE template0")
    with psycopg.connect(dbname=DATABASE, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_credits")
    return DATABASE


@contextlib.contextmanager
def running(name, database, port):
    """Starts one example service against `database` and yields its base URL once it answers."""
    command = SERVICES[name][0]
    env = {**os.environ, "PGDATABASE": database, "LISTEN": f"127.0.0.1:{port}"}
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call(base, "POST", "/v1/nothing")
                break
            except OSError:
                assert process.poll() is None, f"{name} service exited"
                assert time.monotonic() < deadline, f"{name} service did not start"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module", params=list(SERVICES))
def service(request, database):
    with running(request.param, database, SERVICES[request.param][1]) as base:
        yield request.param, base


def call(base, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, parse(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, parse(error.read())


def parse(raw):
    return json.loads(raw) if raw else None


def ledger(account, kind):
    with psycopg.connect(dbname=DATABASE) as conn:
        return conn.execute("SELECT count(*) FROM credits.ledger WHERE account = %s AND kind = %s",
                            (account, kind)).fetchone()[0]


def test_charge_until_the_wall_then_recharge_and_continue(service):
    name, base = service
    account = f"{name}-customer"
    search = {"X-Account": account}

    status, headers, body = call(base, "POST", f"/v1/accounts/{account}/recharge", {"amount": "3"})
    assert (status, body["balance"], headers["X-Credits-Balance"]) == (200, "3", "3")

    for remaining in ["2", "1", "0"]:
        status, headers, body = call(base, "POST", "/v1/search", headers=search)
        assert (status, headers["X-Credits-Balance"], body["balance"], body["hits"]) == (200, remaining, remaining, 1000)

    status, headers, body = call(base, "POST", "/v1/search", headers=search)
    assert status == 402
    readable = body.pop("readable_message")
    assert f"'{account}'" in readable and "Recharge" in readable
    assert body == {
        "error_code": 402,
        "error_name": "InsufficientBalanceError",
        "status_code": 40203,
        "message": MESSAGE,
        "account": account,
        "balance": "0",
        "held": "0",
        "available": "0",
        "min_balance": "0",
        "cost": "1",
        "shortfall": "1",
    }
    assert headers["X-Credits-Balance"] == "0"
    assert headers["X-Credits-Required"] == "1"
    assert f"/v1/accounts/{account}/recharge" in headers["Link"]
    assert ledger(account, "charge") == 3, "the refused request charged nothing"

    status, _, body = call(base, "POST", f"/v1/accounts/{account}/recharge", {"amount": "5"})
    assert (status, body["balance"]) == (200, "5")
    status, headers, _ = call(base, "POST", "/v1/search", headers=search)
    assert (status, headers["X-Credits-Balance"]) == (200, "4")


def test_idempotency_key_header_charges_once(service):
    name, base = service
    account = f"{name}-idem"
    call(base, "POST", f"/v1/accounts/{account}/recharge", {"amount": "10"})
    retry = {"X-Account": account, "Idempotency-Key": "req-7"}
    first = call(base, "POST", "/v1/search", headers=retry)
    second = call(base, "POST", "/v1/search", headers=retry)
    assert first[0] == second[0] == 200
    assert first[2]["balance"] == second[2]["balance"] == "9"
    assert ledger(account, "charge") == 1


def test_missing_account_is_404_and_bad_input_is_400(service):
    name, base = service
    status, _, body = call(base, "POST", "/v1/search", headers={"X-Account": f"{name}-ghost"})
    assert (status, body["error_code"], body["error_name"], body["account"]) == (404, 404, "AccountNotFoundError", f"{name}-ghost")
    status, _, body = call(base, "POST", f"/v1/accounts/{name}-x/recharge", {"amount": "-1"})
    assert (status, body["error_code"], body["error_name"], body["field"]) == (400, 400, "InvalidInputError", "amount")


def test_rust_service_retries_serialization_failures():
    """Under SERIALIZABLE, concurrent charges of one account fail with 40001; the Rust
    service retries them, so callers see 200 (or, when retries run out, 503) and every
    200 is exactly one charge."""
    database = "t_http_serializable"
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {database} TEMPLATE template0")
        admin.execute(f"ALTER DATABASE {database} SET default_transaction_isolation = 'serializable'")
    with psycopg.connect(dbname=database, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_credits")
        conn.execute("SELECT credits.create_account('busy', 1000)")
        rollbacks_before = conn.execute(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
    with running("rust", database, 8405) as base, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: call(base, "POST", "/v1/search", headers={"X-Account": "busy"}), range(200)))
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert all(headers["Retry-After"] == "1" for status, headers, _ in results if status == 503)
    assert statuses.count(200) >= 180, f"retries absorb most conflicts: {statuses.count(503)} gave up"
    with psycopg.connect(dbname=database, autocommit=True) as conn:
        charges, balance = conn.execute(
            "SELECT count(*), (SELECT balance FROM credits.accounts WHERE account = 'busy')::text "
            "FROM credits.ledger WHERE kind = 'charge'").fetchone()
        # The service's backends report their rolled-back transactions as they exit.
        deadline = time.monotonic() + 10
        while True:
            rollbacks_after = conn.execute(
                "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
            if rollbacks_after > rollbacks_before or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert charges == statuses.count(200), "every 200 is exactly one charge, every 503 none"
    assert balance == str(1000 - charges)
    assert rollbacks_after > rollbacks_before, "the load did produce serialization failures to retry"


@pytest.mark.parametrize("name", list(SERVICES))
def test_a_service_answers_503_when_the_database_is_unreachable(name):
    """No connection can be had: every endpoint answers 503 with a JSON body and
    Retry-After instead of dropping the connection (the Rust one used to panic, the Python
    and Node.js ones answered 500)."""
    port = {"rust": 8406, "python": 8407, "node": 8408}[name]
    command = [part if part != str(SERVICES[name][1]) else str(port) for part in SERVICES[name][0]]
    env = {**os.environ, "PGPORT": "1", "LISTEN": f"127.0.0.1:{port}"}
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers, body = call(base, "POST", "/v1/search", headers={"X-Account": "a"})
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, f"the {name} service did not start"
                time.sleep(0.2)
        endpoints = [("POST", "/v1/search", None), ("POST", "/v1/accounts/a/recharge", {"amount": "1"})]
        endpoints += {"rust": [("GET", "/v1/accounts/a/balance", None)],
                      "python": [("GET", "/accounts/a/usage.json", None)], "node": []}[name]
        for method, path, payload in endpoints:
            status, headers, body = call(base, method, path, payload, {"X-Account": "a"})
            assert (status, headers["Retry-After"], body["error_code"], body["error_name"]) == \
                (503, "1", 503, "DatabaseUnavailableError"), path
        assert process.poll() is None, "still serving"
    finally:
        process.terminate()
        process.wait(timeout=10)
