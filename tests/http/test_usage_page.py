"""The usage page of the Python example, rendered by a real headless browser (Debian's
chromium): the charts and tables it draws carry the account's real figures, those
credits.statement, usage and the views give. The screenshot goes to target/, out of the
repository."""
import json
import re
import shutil
import subprocess
from decimal import Decimal
from html.parser import HTMLParser

import psycopg

from test_http_402 import ROOT, SERVICES, call, database, running  # noqa: F401 (a fixture)

ACCOUNT = "usage page/eu"
PATH = "/accounts/usage%20page%2Feu/usage"


class Drawn(HTMLParser):
    """The elements the page's script drew, by tag, with their attributes and text."""

    def __init__(self):
        super().__init__()
        self.elements, self.open = [], []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, **dict(attrs), "text": ""}
        self.elements.append(element)
        self.open.append(element)

    def handle_endtag(self, tag):
        while self.open and self.open.pop()["tag"] != tag:
            pass

    def handle_data(self, data):
        if self.open:
            self.open[-1]["text"] += data

    def all(self, tag, **attrs):
        return [e for e in self.elements if e["tag"] == tag and all(e.get(k) == v for k, v in attrs.items())]


def browser(*arguments):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by scripts/test.sh (Debian's chromium package)"
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", *arguments],
                          check=True, capture_output=True, text=True, timeout=120).stdout


def test_the_usage_page_draws_the_accounts_real_figures(database):
    with psycopg.connect(dbname=database, autocommit=True) as conn:
        # Ten days of history, restored as pg_restore would (the balance is the entries'
        # sum), then today's charges, a hold and a promotional grant.
        with conn.transaction():
            conn.execute("INSERT INTO credits.accounts (account, balance, created_at) "
                         "VALUES (%s, 150, now() - interval '10 days')", (ACCOUNT,))
            conn.execute("""INSERT INTO credits.ledger (account, amount, kind, reason, created_at)
                            SELECT %s, CASE WHEN d = 10 THEN 200 ELSE -5 END, CASE WHEN d = 10 THEN 'opening' ELSE 'charge' END,
                                   CASE WHEN d = 10 THEN 'initial balance' WHEN d %% 2 = 0 THEN 'search' ELSE 'chat' END,
                                   now() - interval '1 day' * d
                              FROM generate_series(0, 10) d""", (ACCOUNT,))
        conn.execute("SELECT credits.charge(%s, 12.5, 'image')", (ACCOUNT,))
        conn.execute("SELECT credits.hold(%s, 20, reason => 'render job')", (ACCOUNT,))
        conn.execute("SELECT credits.grant(%s, 30, 'promotional', priority => 10, expires_at => now() + interval '5 days')", (ACCOUNT,))
        closings = [row[0] for row in conn.execute(
            """SELECT closing::text FROM credits.statement(%s, date_trunc('day', now()) - interval '29 days',
                                                          date_trunc('day', now()) + interval '1 day', 'day') ORDER BY period_start""",
            (ACCOUNT,))]
        spend = {row[0]: row[1] for row in conn.execute(
            "SELECT key, spent::text FROM credits.usage(%s, now() - interval '30 days', now())", (ACCOUNT,))}
        balance = conn.execute("SELECT credits.balance(%s)::text", (ACCOUNT,)).fetchone()[0]

    with running("python", database, SERVICES["python"][1]) as base:
        status, _, figures = call(base, "GET", PATH + ".json")
        assert status == 200, figures
        assert [day["closing"] for day in figures["days"]] == closings
        assert {row["reason"]: row["spent"] for row in figures["spend"]} == spend
        assert figures["balance"] == balance == "167.5"

        page = Drawn()
        page.feed(browser("--virtual-time-budget=5000", "--dump-dom", base + PATH))
        assert page.all("body")[0].get("data-rendered") == "true", "the page's script ran to the end"
        assert page.all("b", id="balance")[0]["text"] == balance
        points = page.all("circle")
        assert [p["data-closing"] for p in points] == closings, "one point per day, at its closing balance"
        assert Decimal(points[-1]["data-closing"]) == Decimal(balance)
        bars = {bar["data-reason"]: bar["data-spent"] for bar in page.all("rect")}
        assert bars == spend and bars["image"] == "12.5" and bars["search"] == "25"
        assert float(page.all("rect", **{"data-reason": "image"})[0]["width"]) < float(
            page.all("rect", **{"data-reason": "search"})[0]["width"]), "bars scale with what was spent"
        cells = [cell["text"] for cell in page.all("td")]
        assert "render job" in cells and "promotional" in cells and "30" in cells
        assert re.search(r"runs out at \d{4}-", page.all("p", id="runway")[0]["text"])

        screenshot = ROOT / "target" / "usage-page.png"
        screenshot.parent.mkdir(exist_ok=True)
        browser("--virtual-time-budget=5000", "--window-size=900,1000", f"--screenshot={screenshot}", base + PATH)
        assert screenshot.stat().st_size > 10_000, "a screenshot with something drawn on it"
