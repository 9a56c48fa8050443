//! Adversarial input: at least 100,000 calls of every function with hostile values. No
//! backend may crash, every rejection carries a documented SQLSTATE, and the ledger
//! invariant holds afterwards. FUZZ_CALLS overrides the count, FUZZ_SEED the seed.

use pg_credits_client_tests::*;

/// SQLSTATEs a caller may meet: pg_credits' own, and PostgreSQL's for values that cannot
/// even be cast to the argument types (malformed JSON, invalid text).
const DOCUMENTED: &[&str] = &["PT402", "PT404", "PT409", "22004", "22023", "22003", "22001", "22P02", "22021"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic for a seed, so a failure can be replayed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn maybe_null(&mut self, value: String) -> Option<String> {
        (self.next() % 8 != 0).then_some(value)
    }
}

fn account(rng: &mut Rng) -> Option<String> {
    let value = match rng.next() % 10 {
        0 => String::new(),
        1 => "x".repeat(200 + (rng.next() % 100) as usize),
        2 => rng.pick(&["'; DROP TABLE credits.ledger; --", "a\u{0}b", "tab\there", "\u{feff}bom", "ünï©ødé 🚀", "\\x00ff"]).to_string(),
        _ => format!("acct-{}", rng.next() % 12),
    };
    rng.maybe_null(value)
}

fn amount(rng: &mut Rng) -> Option<String> {
    let value = match rng.next() % 12 {
        0 => rng.pick(&["NaN", "Infinity", "-Infinity", "nan", "1e400", "-0", "0.0"]).to_string(),
        1 => rng.pick(&["99999999999999999999.999999999999999999", "100000000000000000000", "1e-19", "0.000000000000000001"]).to_string(),
        2 => format!("-{}", rng.next() % 100),
        3 => rng.pick(&["1;2", "abc", "", " 5 ", "1,5", "0x10"]).to_string(),
        4 => format!("{}.{:04}", rng.next() % 5, rng.next() % 10000),
        _ => format!("{}", rng.next() % 20),
    };
    rng.maybe_null(value)
}

fn text(rng: &mut Rng) -> Option<String> {
    let value = match rng.next() % 8 {
        0 => "r".repeat(1000 + (rng.next() % 50) as usize),
        1 => rng.pick(&["' OR 1=1 --", "$$; SELECT 1; $$", "\\", "%s%n%x", ""]).to_string(),
        _ => format!("key-{}", rng.next() % 50),
    };
    (rng.next() % 3 == 0).then_some(value)
}

fn metadata(rng: &mut Rng) -> Option<String> {
    let value = match rng.next() % 8 {
        0 => "{bad json".to_string(),
        1 => "[1, 2, 3]".to_string(),
        2 => "\"string\"".to_string(),
        3 => format!("{{\"blob\": \"{}\"}}", "m".repeat(9000)),
        4 => "{\"n\": 1e400, \"deep\": {\"a\": [null, true, 0.1]}}".to_string(),
        _ => format!("{{\"request\": {}}}", rng.next() % 1000),
    };
    (rng.next() % 3 == 0).then_some(value)
}

#[test]
fn hostile_values_are_refused_with_documented_sqlstates() {
    let calls: usize = std::env::var("FUZZ_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED_CAFE);
    let db = fresh_database("fuzz");
    let mut client = connect(&db);
    let statements = [
        client.prepare("SELECT credits.charge($1::text, $2::text::numeric, $3::text, $4::text, $5::text::jsonb)::text").unwrap(),
        client.prepare("SELECT credits.recharge($1::text, $2::text::numeric, $3::text, $4::text, $5::text::jsonb)::text").unwrap(),
        client.prepare("SELECT credits.create_account($1::text, $2::text::numeric, $3::text::numeric, $4::text::numeric, $5::text::jsonb)::text").unwrap(),
        client.prepare("SELECT credits.balance($1::text)::text").unwrap(),
        client.prepare("SELECT credits.can_afford($1::text, $2::text::numeric)::text").unwrap(),
        client.prepare("SELECT credits.set_limits($1::text, $2::text::numeric, $3::text::numeric)::text").unwrap(),
        client.prepare("SELECT credits.set_metadata($1::text, $2::text::jsonb)::text").unwrap(),
    ];
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0usize, std::collections::BTreeMap::<String, usize>::new());
    for call in 0..calls {
        let which = (rng.next() % statements.len() as u64) as usize;
        let args: Vec<Option<String>> = match which {
            0 | 1 => vec![account(&mut rng), amount(&mut rng), text(&mut rng), text(&mut rng), metadata(&mut rng)],
            2 => vec![account(&mut rng), amount(&mut rng), amount(&mut rng), amount(&mut rng), metadata(&mut rng)],
            3 => vec![account(&mut rng)],
            4 => vec![account(&mut rng), amount(&mut rng)],
            5 => vec![account(&mut rng), amount(&mut rng), amount(&mut rng)],
            _ => vec![account(&mut rng), metadata(&mut rng)],
        };
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn postgres::types::ToSql + Sync)).collect();
        match client.query_one(&statements[which], &params) {
            Ok(_) => accepted += 1,
            Err(e) => {
                let db_error = e.as_db_error().unwrap_or_else(|| {
                    panic!("call {call} (seed {seed}) lost the server: {e} with {args:?}")
                });
                let code = db_error.code().code();
                assert!(DOCUMENTED.contains(&code), "call {call} (seed {seed}): undocumented {code} {} for {args:?}", db_error.message());
                *refused.entry(code.to_string()).or_default() += 1;
            }
        }
    }
    eprintln!("fuzz: {calls} calls, {accepted} accepted, refused by SQLSTATE: {refused:?}");
    assert!(accepted > calls / 20, "the generator also produces valid calls");
    assert!(refused.len() >= 6, "the generator reaches most error classes: {refused:?}");
    // A crashed backend makes the postmaster end every session, this one included.
    client.query_one("SELECT 1", &[]).expect("the same backend is still alive");
    assert_ledger_invariant(&mut client);
}
