"""pg_credits from Python (psycopg 3): the same metered endpoint and 402 mapping as the
Rust reference service, with nothing but the standard library's HTTP server, and a usage
page for a customer: GET /accounts/{id}/usage (HTML: the balance over 30 days and the spend
by reason as charts, the active holds and grants, the runway) and /accounts/{id}/usage.json
(the same figures), from credits.statement, usage, runway and the views.

    PGHOST=127.0.0.1 PGPORT=28815 PGUSER=postgres PGDATABASE=credits_demo python3 app.py 8403
"""
import html
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool


def to_http(error: psycopg.Error):
    """The mapping rule: SQLSTATE PTxyz -> HTTP xyz with the DETAIL's JSON; 22xxx -> 400;
    no database (no connection could be had, or it was lost: the request did nothing and
    may be retried) -> 503 with Retry-After."""
    diag, state = error.diag, error.sqlstate or ""
    if isinstance(error, psycopg.OperationalError) and (not state or state.startswith(("08", "57P"))):
        return 503, {"Retry-After": "1"}, {"error_code": 503, "error_name": "DatabaseUnavailableError",
                                           "message": "the database cannot be reached, retry shortly"}
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


# libpq reads PGHOST, PGPORT, ...; a request waits 5 s at most for a connection.
pool = ConnectionPool("", min_size=1, max_size=8, open=True, timeout=5)


def metered_search(account, key):
    with pool.connection() as conn:  # one transaction: charge, work, commit
        balance = conn.execute("SELECT credits.charge(%s, 1, 'POST /v1/search', %s)::text", (account, key)).fetchone()[0]
        hits = conn.execute("SELECT count(*) FROM generate_series(1, 1000)").fetchone()[0]
    return 200, {"X-Credits-Balance": balance}, {"hits": hits, "balance": balance}


def recharge(account, amount):
    with pool.connection() as conn:
        balance = conn.execute("SELECT credits.recharge(%s, %s::numeric, 'POST recharge')::text", (account, str(amount))).fetchone()[0]
    return 200, {"X-Credits-Balance": balance}, {"account": account, "balance": balance}


def usage(account):
    """The figures of the usage page, as JSON-ready text (decimals stay exact strings)."""
    with pool.connection() as conn:
        balance, available = conn.execute(
            "SELECT credits.balance(%s)::text, credits.available(%s)::text", (account, account)).fetchone()
        days = conn.execute(
            """SELECT to_char(period_start, 'YYYY-MM-DD'), closing::text, credited::text, debited::text, expired::text
                 FROM credits.statement(%s, date_trunc('day', now()) - interval '29 days', date_trunc('day', now()) + interval '1 day', 'day')
                ORDER BY period_start""", (account,)).fetchall()
        spend = conn.execute(
            "SELECT key, spent::text, entries FROM credits.usage(%s, now() - interval '30 days', now())", (account,)).fetchall()
        holds = conn.execute(
            "SELECT hold_id, remaining::text, expires_at::text, reason FROM credits.active_holds WHERE account = %s ORDER BY hold_id",
            (account,)).fetchall()
        grants = conn.execute(
            """SELECT grant_id, category, remaining::text, expires_at::text, status FROM credits.grants
                WHERE account = %s AND grant_id <> 0 AND status IN ('active', 'pending') ORDER BY expires_at, grant_id""",
            (account,)).fetchall()
        spendable, spent, per_day, runs_out_at = conn.execute(
            "SELECT spendable::text, spent::text, per_day::text, runs_out_at::text FROM credits.runway(%s)", (account,)).fetchone()
    return {
        "account": account, "balance": balance, "available": available,
        "days": [{"day": d, "closing": c, "credited": cr, "debited": db, "expired": ex} for d, c, cr, db, ex in days],
        "spend": [{"reason": r, "spent": s, "entries": n} for r, s, n in spend],
        "holds": [{"hold_id": h, "remaining": r, "expires_at": e, "reason": why} for h, r, e, why in holds],
        "grants": [{"grant_id": g, "category": c, "remaining": r, "expires_at": e, "status": st} for g, c, r, e, st in grants],
        "runway": {"spendable": spendable, "spent_7_days": spent, "per_day": per_day, "runs_out_at": runs_out_at},
    }


PAGE = (Path(__file__).parent / "usage.html").read_text()


def usage_page(account):
    figures = usage(account)
    # The figures go in as JSON the page's script draws from; </ never closes the script.
    data = json.dumps(figures).replace("</", "<\\/")
    return PAGE.replace("{{account}}", html.escape(account)).replace("{{data}}", data)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = [urllib.parse.unquote(part) for part in self.path.split("/")]
        try:
            if len(parts) == 4 and parts[1] == "accounts" and parts[3] == "usage.json":
                self.reply(200, {}, usage(parts[2]))
            elif len(parts) == 4 and parts[1] == "accounts" and parts[3] == "usage":
                self.reply_page(usage_page(parts[2]))
            else:
                self.reply(404, {}, {"error_code": 404, "message": "no such page"})
        except psycopg.Error as error:
            self.reply(*to_http(error))

    def reply_page(self, page):
        data = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
