//! Transfers from clients: racing in every direction between the same accounts, they
//! never deadlock, never create or lose credit, and every account keeps its ledger.

use pg_credits_client_tests::*;
use rust_decimal::Decimal;
use std::thread;

#[test]
fn transfers_racing_in_every_direction_move_credit_exactly_and_never_deadlock() {
    let db = fresh_database("transfers_race");
    let mut client = connect(&db);
    client
        .batch_execute(
            "SELECT credits.create_account('t0', 100), credits.create_account('t1', 100),
                    credits.create_account('t2', 100), credits.create_account('t3', 100);
             SELECT credits.set_slots('t3', 4);
             SELECT credits.grant('t1', 50, 'promotional', priority => 10, expires_at => now() + interval '1 day');",
        )
        .unwrap();
    let workers: Vec<_> = (0..8)
        .map(|worker: u64| {
            let db = db.clone();
            thread::spawn(move || -> (u32, u32) {
                let mut client = connect(&db);
                let (mut moved, mut refused) = (0, 0);
                for i in 0..60u64 {
                    // Pairs in both directions, the hot account t3 among them.
                    let step = worker * 7 + i * 3;
                    let from = step % 4;
                    let to = (from + 1 + (step / 4) % 3) % 4;
                    let amount = Decimal::new((step % 9 + 1) as i64 * 250, 2);
                    let result = client.query_one(
                        "SELECT from_balance FROM credits.transfer($1, $2, $3)",
                        &[&format!("t{from}"), &format!("t{to}"), &amount],
                    );
                    match result {
                        Ok(_) => moved += 1,
                        Err(error) => {
                            let code = error.as_db_error().map(|e| e.code().code().to_owned());
                            // t1's promotional grants travel with what they pay for, and a
                            // hot account cannot receive grants.
                            let allowed = code.as_deref() == Some("PT402") || (to == 3 && code.as_deref() == Some("PT403"));
                            assert!(allowed, "t{from} -> t{to}: {error:?}");
                            refused += 1;
                        }
                    }
                }
                (moved, refused)
            })
        })
        .collect();
    let (moved, _refused) = workers.into_iter().map(|worker| worker.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(moved > 100, "most transfers went through: {moved}");
    let total: Decimal = client
        .query_one("SELECT sum(credits.balance(account)) FROM credits.accounts WHERE account LIKE 't_'", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, dec("450"), "credit moved, none made or lost");
    let (outs, ins): (Decimal, Decimal) = {
        let row = client
            .query_one(
                "SELECT -sum(amount) FILTER (WHERE kind = 'transfer_out'), sum(amount) FILTER (WHERE kind = 'transfer_in')
                   FROM credits.ledger",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(outs, ins, "every transfer_out has its transfer_in");
    let unpaired: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT transfer_id FROM credits.ledger WHERE transfer_id IS NOT NULL GROUP BY transfer_id
                                    HAVING sum(amount) <> 0 OR count(DISTINCT account) <> 2) t",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unpaired, 0, "each transfer moves between two accounts and nets to zero");
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_statement_shows_a_transfer_on_both_sides() {
    let db = fresh_database("transfers_statement");
    let mut client = connect(&db);
    client
        .batch_execute("SELECT credits.create_account('src', 40), credits.create_account('dst', 0); SELECT credits.transfer('src', 'dst', 15);")
        .unwrap();
    for (account, credited, debited, closing) in [("src", "40", "15", "25"), ("dst", "15", "0", "15")] {
        let row = client
            .query_one(
                "SELECT credited, debited, closing FROM credits.statement($1, now() - interval '1 hour', now() + interval '1 hour')",
                &[&account],
            )
            .unwrap();
        let figures: (Decimal, Decimal, Decimal) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(figures, (dec(credited), dec(debited), dec(closing)), "{account}");
    }
}

#[test]
fn grant_credit_cannot_go_to_a_hot_account_and_the_error_says_why() {
    let db = fresh_database("transfers_hot_grants");
    let mut client = connect(&db);
    client
        .batch_execute(
            "SELECT credits.create_account('promo', 0), credits.create_account('hot', 10);
             SELECT credits.set_slots('hot', 2);
             SELECT credits.grant('promo', 5, 'promotional');",
        )
        .unwrap();
    let error = db_error(client.query_one("SELECT * FROM credits.transfer('promo', 'hot', 1)", &[]));
    assert_eq!(error.code().code(), "PT403");
    let payload = payload(&error);
    assert_eq!(payload["name"], "ForbiddenWriteError");
    assert!(!payload["readable_message"].as_str().unwrap().contains("append-only"), "{payload}");
    assert!(error.hint().unwrap().contains("plain accounts"), "{:?}", error.hint());
    assert_eq!(balance(&mut client, "promo"), dec("5"), "nothing moved");
}
