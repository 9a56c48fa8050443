// pg_credits from Node.js (the `pg` package): the same metered endpoint and 402 mapping as
// the Rust reference service.
//   PGHOST=127.0.0.1 PGPORT=28815 PGUSER=postgres PGDATABASE=credits_demo node app.js 8404
const http = require("node:http");
const { Pool } = require("pg");

const pool = new Pool({ max: 8, connectionTimeoutMillis: 5000 }); // reads PGHOST, PGPORT, PGUSER, PGDATABASE

// No connection could be had (the database is down, restarting or unreachable): the
// request did nothing and may be retried. Socket errors carry no SQLSTATE.
function unreachable(err) {
  const state = err.code || "";
  return /^E[A-Z]+$/.test(state) || state.startsWith("08") || state.startsWith("57P") ||
    /timeout exceeded when trying to connect|Connection terminated/.test(err.message || "");
}

// The mapping rule: SQLSTATE PTxyz -> HTTP xyz with the DETAIL's JSON; 22xxx -> 400;
// no database -> 503 with Retry-After.
function toHttp(err) {
  const state = err.code || "";
  if (unreachable(err)) {
    return [503, { "Retry-After": "1" },
      { error_code: 503, error_name: "DatabaseUnavailableError", message: "the database cannot be reached, retry shortly" }];
  }
  if (!state.startsWith("PT") && !state.startsWith("22")) {
    return [500, {}, { error_code: 500, error_name: "InternalError", message: "internal error" }];
  }
  const { code, name, message, ...fields } = JSON.parse(err.detail || "{}");
  const status = state.startsWith("PT") ? Number(state.slice(2)) : 400;
  const body = { error_code: code ?? status, error_name: name ?? "InvalidInputError", message: err.message, ...fields };
  const headers = status !== 402 ? {} : {
    "X-Credits-Balance": fields.balance,
    "X-Credits-Required": fields.cost,
    Link: `</v1/accounts/${fields.account}/recharge>; rel="payment"`,
  };
  return [status, headers, body];
}

async function meteredSearch(account, key) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN"); // one transaction: charge, work, commit
    const { rows } = await client.query(
      "SELECT credits.charge($1, 1, 'POST /v1/search', $2)::text AS balance", [account, key ?? null]);
    const work = await client.query("SELECT count(*)::int AS hits FROM generate_series(1, 1000)");
    await client.query("COMMIT");
    return [200, { "X-Credits-Balance": rows[0].balance }, { hits: work.rows[0].hits, balance: rows[0].balance }];
  } catch (err) {
    await client.query("ROLLBACK");
    throw err;
  } finally {
    client.release();
  }
}

async function recharge(account, amount) {
  const { rows } = await pool.query(
    "SELECT credits.recharge($1, $2::numeric, 'POST recharge')::text AS balance", [account, String(amount)]);
  return [200, { "X-Credits-Balance": rows[0].balance }, { account, balance: rows[0].balance }];
}

async function route(req, body) {
  if (req.method === "POST" && req.url === "/v1/search") return meteredSearch(req.headers["x-account"], req.headers["idempotency-key"]);
  const match = req.url.match(/^\/v1\/accounts\/([^/]+)\/recharge$/);
  if (req.method === "POST" && match) return recharge(decodeURIComponent(match[1]), JSON.parse(body).amount);
  return [404, {}, { error_code: 404, message: "no such endpoint" }];
}

http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", async () => {
    const [status, headers, payload] = await route(req, body).catch(toHttp);
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(payload));
  });
}).listen(Number(process.argv[2]), "127.0.0.1");
