//! In-backend tests: each runs in its own transaction, rolled back afterwards. They
//! check results and messages; SQLSTATEs and payloads are checked from a real client
//! in tests/ (pgrx's `error = …` only matches message text).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::AnyNumeric;

    fn numeric(sql: &str) -> AnyNumeric {
        Spi::get_one::<AnyNumeric>(sql).expect("query runs").expect("not NULL")
    }

    fn num(text: &str) -> AnyNumeric {
        text.parse().expect("a decimal literal")
    }

    /// balance = sum(ledger.amount) for every account.
    fn ledger_matches_balances() -> bool {
        Spi::get_one::<bool>(
            "SELECT bool_and(a.balance = coalesce((SELECT sum(l.amount) FROM credits.ledger l
                                                    WHERE l.account = a.account), 0))
               FROM credits.accounts a",
        )
        .expect("query runs")
        .unwrap_or(true)
    }

    #[pg_test]
    fn charges_and_recharges_move_exact_decimals() {
        let steps: &[(&str, &str)] = &[
            ("SELECT credits.create_account('t', 10.50)", "10.50"),
            ("SELECT credits.charge('t', 0.25)", "10.25"),
            ("SELECT credits.charge('t', 10.25)", "0.00"),
            ("SELECT credits.recharge('t', 0.000000000000000001)", "0.000000000000000001"),
            ("SELECT credits.recharge('new', 5)", "5"),
            ("SELECT credits.charge('t', 0)", "0.000000000000000001"),
            ("SELECT credits.balance('new')", "5"),
        ];
        for (sql, expected) in steps {
            assert_eq!(numeric(sql), num(expected), "{sql}");
        }
        assert!(ledger_matches_balances());
    }

    #[pg_test]
    fn ledger_records_kind_reason_and_balance_after() {
        Spi::run("SELECT credits.create_account('t', 3)").unwrap();
        Spi::run("SELECT credits.charge('t', 1, 'GET /x', NULL, '{\"req\": 7}')").unwrap();
        let (kind, reason) = Spi::get_two::<String, String>(
            "SELECT kind, reason FROM credits.ledger WHERE account = 't' ORDER BY id DESC LIMIT 1",
        )
        .unwrap();
        assert_eq!((kind.as_deref(), reason.as_deref()), (Some("charge"), Some("GET /x")));
        assert_eq!(
            numeric("SELECT balance_after FROM credits.ledger WHERE account = 't' ORDER BY id DESC LIMIT 1"),
            num("2")
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT (metadata->>'req')::int8 FROM credits.ledger WHERE kind = 'charge'")
                .unwrap(),
            Some(7)
        );
    }

    #[pg_test]
    fn zero_cost_charges_nothing_and_writes_nothing() {
        Spi::run("SELECT credits.create_account('t', 3)").unwrap();
        assert_eq!(numeric("SELECT credits.charge('t', 0)"), num("3"));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM credits.ledger WHERE account = 't'").unwrap(),
            Some(1)
        );
    }

    #[pg_test]
    fn idempotent_charge_applies_once_and_replays_the_original_result() {
        Spi::run("SELECT credits.create_account('t', 10)").unwrap();
        assert_eq!(numeric("SELECT credits.charge('t', 4, idempotency_key => 'k')"), num("6"));
        Spi::run("SELECT credits.charge('t', 1)").unwrap();
        assert_eq!(numeric("SELECT credits.charge('t', 4, idempotency_key => 'k')"), num("6"));
        assert_eq!(numeric("SELECT credits.balance('t')"), num("5"));
    }

    #[pg_test]
    fn can_afford_matches_what_charge_would_do() {
        Spi::run("SELECT credits.create_account('t', 5, min_balance => -2)").unwrap();
        for (cost, affordable) in [("7", true), ("7.01", false), ("0", true)] {
            let sql = format!("SELECT credits.can_afford('t', {cost})");
            assert_eq!(Spi::get_one::<bool>(&sql).unwrap(), Some(affordable), "{sql}");
        }
        assert_eq!(numeric("SELECT credits.charge('t', 7)"), num("-2"));
    }

    #[pg_test]
    fn direct_balance_update_is_recorded_as_adjustment() {
        Spi::run("SELECT credits.create_account('t', 10)").unwrap();
        Spi::run("UPDATE credits.accounts SET balance = 25 WHERE account = 't'").unwrap();
        assert_eq!(
            numeric("SELECT amount FROM credits.ledger WHERE account = 't' AND kind = 'adjustment'"),
            num("15")
        );
        assert!(ledger_matches_balances());
    }

    #[pg_test(error = "Account balance not enough to run this query, please recharge.")]
    fn charge_beyond_the_floor_fails() {
        Spi::run("SELECT credits.create_account('t', 1)").unwrap();
        Spi::run("SELECT credits.charge('t', 2)").unwrap();
    }

    #[pg_test(error = "Account balance not enough to run this query, please recharge.")]
    fn direct_update_below_the_floor_fails() {
        Spi::run("SELECT credits.create_account('t', 1)").unwrap();
        Spi::run("UPDATE credits.accounts SET balance = -1 WHERE account = 't'").unwrap();
    }

    #[pg_test(error = "Account not found.")]
    fn charging_a_missing_account_fails() {
        Spi::run("SELECT credits.charge('missing', 1)").unwrap();
    }

    #[pg_test(error = "cost must not be negative")]
    fn negative_cost_fails() {
        Spi::run("SELECT credits.create_account('t', 1)").unwrap();
        Spi::run("SELECT credits.charge('t', -1)").unwrap();
    }

    #[pg_test(error = "The credits ledger is append-only: entries cannot be updated, deleted or truncated.")]
    fn ledger_rows_cannot_be_deleted() {
        Spi::run("SELECT credits.create_account('t', 1)").unwrap();
        Spi::run("DELETE FROM credits.ledger").unwrap();
    }

    #[pg_test]
    fn unqualified_charge_with_typed_arguments_resolves_to_credits() {
        // pg_catalog.charge("char", "char") exists; typed arguments pick ours.
        Spi::run("SELECT credits.create_account('t', 2)").unwrap();
        Spi::run("SET LOCAL search_path = credits, public").unwrap();
        assert_eq!(numeric("SELECT charge('t'::text, 1::numeric)"), num("1"));
    }
}
