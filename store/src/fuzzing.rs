//! What the SQL fuzz target (`fuzz/fuzz_targets/sql_api.rs`) runs, and the test suite with it a
//! bounded number of times: any text sent to the SQL API is answered or refused, within its
//! timeout, and never brings the process down.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::TableCatalog;
use crate::query::{QueryEngine, QueryLimits};
use crate::schema::Table;

/// A query engine over empty tables of every kind, with a runtime to drive it.
pub struct SqlTarget {
    runtime: tokio::runtime::Runtime,
    engine: QueryEngine,
}

impl std::fmt::Debug for SqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTarget").finish_non_exhaustive()
    }
}

impl SqlTarget {
    /// Tables under `dir`; queries stopped after `timeout`.
    ///
    /// # Panics
    /// When the runtime, the tables or the engine cannot be made (a broken machine).
    pub fn new(dir: &std::path::Path, timeout: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let storage = crate::storage::Storage::local(dir).expect("a storage");
        let mut catalogs: Vec<Arc<TableCatalog>> = Vec::new();
        for t in Table::ALL {
            #[allow(
                clippy::disallowed_methods,
                reason = "the fuzz target's own runtime, on its own thread"
            )]
            let catalog = runtime
                .block_on(TableCatalog::open(storage.clone(), "default", t))
                .expect("a table");
            catalogs.push(Arc::new(catalog));
        }
        let limits = QueryLimits {
            timeout,
            max_running: 4,
            max_function_bytes: 8 << 20,
            ..QueryLimits::default()
        };
        #[allow(
            clippy::disallowed_methods,
            reason = "the fuzz target's own runtime, on its own thread"
        )]
        let engine = runtime
            .block_on(QueryEngine::new(&catalogs, limits))
            .expect("an engine");
        Self { runtime, engine }
    }

    /// Runs `sql`; whatever happens must be an answer or an error.
    pub fn run(&self, sql: &str) -> Result<usize, String> {
        #[allow(
            clippy::disallowed_methods,
            reason = "the fuzz target's own runtime, on its own thread"
        )]
        self.runtime
            .block_on(self.engine.execute(sql))
            .map(|out| out.num_rows())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sightline_common::seeded::Seeded as Rng;

    const TOKENS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP BY",
        "ORDER BY",
        "LIMIT",
        "WITH",
        "AS",
        "UNION ALL",
        "JOIN",
        "ON",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "(",
        ")",
        "(",
        ")",
        ",",
        "+",
        "-",
        "*",
        "/",
        "||",
        "AND",
        "OR",
        "NOT",
        "=",
        "<",
        "LIKE",
        "~",
        "IN",
        "1",
        "0",
        "-1",
        "1e308",
        "'x'",
        "'%'",
        "NULL",
        "spans",
        "logs",
        "metrics",
        "traces",
        "name",
        "duration_ns",
        "attributes['k']",
        "count(*)",
        "repeat(",
        "range(",
        "lpad(",
        "regexp_replace(",
        "generate_series(",
        "array_repeat(",
        "unnest(",
        "CAST(",
        "::int",
        "EXPLAIN",
        "SHOW",
        "TABLES",
        "VALUES",
        "INTERVAL '1 day'",
        "now()",
    ];

    /// Statements of random tokens (mostly nonsense, some valid), and shapes known to be
    /// costly: long chains, deep nesting, doubling CTEs, huge function arguments.
    fn statements(rng: &mut Rng, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..n {
            let len = 1 + rng.below(40);
            let mut s = String::from(if i % 2 == 0 { "SELECT " } else { "" });
            for _ in 0..len {
                let token: &&str = rng.pick(TOKENS);
                s.push_str(token);
                s.push(' ');
            }
            out.push(s);
        }
        for op in ["+", " OR ", "||", " AND "] {
            out.push(format!("SELECT {}", vec!["1"; 5000].join(op)));
        }
        out.push(format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000)));
        out.push(format!(
            "WITH c0 AS (SELECT 1 x), {} SELECT count(*) FROM c24",
            (1..=24)
                .map(|i| format!(
                    "c{i} AS (SELECT * FROM c{p} UNION ALL SELECT * FROM c{p})",
                    p = i - 1
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push("SELECT repeat('x', 2147483647)".into());
        out.push("SELECT range(-9223372036854775808, 9223372036854775807)".into());
        out.push("SELECT count(*) FROM range(10000000000)".into());
        out
    }

    #[test]
    fn random_and_hostile_sql_is_answered_or_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let target = SqlTarget::new(dir.path(), Duration::from_secs(2));
        let mut rng = Rng::new(0x05ee_d5a1);
        let (mut answered, mut refused) = (0, 0);
        for sql in statements(&mut rng, 400) {
            match target.run(&sql) {
                Ok(_) => answered += 1,
                Err(_) => refused += 1,
            }
        }
        // The generator makes some valid statements, and far more nonsense.
        assert!(
            answered > 0 && refused > answered,
            "{answered} answered, {refused} refused"
        );
        // Still answering after all of it.
        assert_eq!(target.run("SELECT 1"), Ok(1));
    }
}
