"""pg_credits from Python (psycopg 3): the same metered endpoint and 402 mapping as the
Rust reference service, with nothing but the standard library's HTTP server.

    PGHOST=127.0.0.1 PGPORT=28815 PGUSER=postgres PGDATABASE=credits_demo python3 app.py 8403
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from psycopg_pool import ConnectionPool


def to_http(error: psycopg.Error):
    """The mapping rule: SQLSTATE PTxyz -> HTTP xyz with the DETAIL's JSON; 22xxx -> 400."""
    diag, state = error.diag, error.sqlstate or ""
    if not (state.startswith("PT") or state.startswith("22")):
        return 500, {}, {"error_code": 500, "error_name": "InternalError", "message": "internal error"}
    payload = json.loads(diag.message_detail or "{}")
    status = int(state[2:]) if state.startswith("PT") else 400
    body = {"error_code": payload.pop("code", status), "error_name": payload.pop("name", "InvalidInputError"),
            "message": diag.message_primary, **{k: v for k, v in payload.items() if k != "message"}}
    headers = {}
    if status == 402:
        headers = {"X-Credits-Balance": payload["balance"], "X-Credits-Required": payload["cost"],
                   "Link": f'</v1/accounts/{payload["account"]}/recharge>; rel="payment"'}
    return status, headers, body


pool = ConnectionPool("", min_size=1, max_size=8, open=True)  # libpq reads PGHOST, PGPORT, ...


def metered_search(account, key):
    with pool.connection() as conn:  # one transaction: charge, work, commit
        balance = conn.execute("SELECT credits.charge(%s, 1, 'POST /v1/search', %s)::text", (account, key)).fetchone()[0]
        hits = conn.execute("SELECT count(*) FROM generate_series(1, 1000)").fetchone()[0]
    return 200, {"X-Credits-Balance": balance}, {"hits": hits, "balance": balance}


def recharge(account, amount):
    with pool.connection() as conn:
        balance = conn.execute("SELECT credits.recharge(%s, %s::numeric, 'POST recharge')::text", (account, str(amount))).fetchone()[0]
    return 200, {"X-Credits-Balance": balance}, {"account": account, "balance": balance}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        try:
            if self.path == "/v1/search":
                result = metered_search(self.headers["X-Account"], self.headers.get("Idempotency-Key"))
            elif self.path.startswith("/v1/accounts/") and self.path.endswith("/recharge"):
                length = int(self.headers.get("Content-Length", 0))
                result = recharge(self.path.split("/")[3], json.loads(self.rfile.read(length))["amount"])
            else:
                result = 404, {}, {"error_code": 404, "message": "no such endpoint"}
        except psycopg.Error as error:
            result = to_http(error)
        self.reply(*result)

    def reply(self, status, headers, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
