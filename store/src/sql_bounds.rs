//! What a SQL text may be before it is planned: its length and how deeply it nests.
//!
//! DataFusion's planner, optimizer and the drop of its expression trees recurse once per level
//! of nesting. The parser bounds nested parentheses, subqueries and `CASE`s (its recursion
//! limit), but a flat chain like `1+1+…+1` or `a OR b OR …` parses in a loop into a tree as deep
//! as the chain is long, and so do chains of casts (`x::int::int…`), subscripts and set
//! operations. Such a tree of a few thousand levels overflows a thread's stack, which aborts
//! the whole process. [`SqlBounds::check`] refuses those statements after parsing, before anything
//! recursive runs on them, and the query threads have stacks with room to spare for every
//! statement it lets through (see [`QUERY_THREAD_STACK_BYTES`]).

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{self, SetExpr, Visit, Visitor};

/// Stack of every thread that parses, plans or runs a query. Only the pages a query touches
/// become resident; the rest is address space. Chosen so that a statement at the nesting limit
/// uses a small part of it in a debug build (see the tests, which run one at the limit of each
/// kind on a thread of this size).
pub const QUERY_THREAD_STACK_BYTES: usize = 64 << 20;

/// How large and how deep a statement may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlBounds {
    /// Bytes of SQL text, checked before parsing.
    pub max_sql_bytes: usize,
    /// Levels of nesting: operators, function calls, casts, subqueries and set operations
    /// inside each other, and tables joined in one statement.
    pub max_depth: usize,
}

impl Default for SqlBounds {
    fn default() -> Self {
        Self {
            max_sql_bytes: 64 * 1024,
            max_depth: 256,
        }
    }
}

impl SqlBounds {
    /// Refuses SQL text longer than the limit, before it is parsed.
    pub fn check_len(&self, sql: &str) -> Result<(), String> {
        if sql.len() > self.max_sql_bytes {
            return Err(format!(
                "the SQL text is {} bytes long; the limit is {} bytes",
                sql.len(),
                self.max_sql_bytes
            ));
        }
        Ok(())
    }

    /// Refuses a parsed statement that nests deeper than the limit, or whose common table
    /// expressions expand to more than [`MAX_EXPANDED_TABLES`] table references.
    pub fn check(&self, statement: &Statement) -> Result<(), String> {
        self.check_visited(|depth| depth.statement(statement))?;
        // Only now is the statement known to be shallow enough to walk recursively.
        let mut ctes = Expansion;
        match statement {
            Statement::Statement(s) => s.visit(&mut ctes),
            Statement::Explain(e) => match &*e.statement {
                Statement::Statement(s) => s.visit(&mut ctes),
                _ => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        }
        .break_value()
        .map_or(Ok(()), Err)
    }

    /// Refuses what `walk` visits (a statement or an expression) when it nests deeper than the
    /// limit.
    pub(crate) fn check_visited(
        &self,
        walk: impl FnOnce(&mut Depth) -> ControlFlow<String>,
    ) -> Result<(), String> {
        let mut depth = Depth {
            limit: self.max_depth,
            level: 0,
            tables: 0,
            pushed: Vec::new(),
        };
        match walk(&mut depth) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(what) => Err(format!(
                "the SQL is too complex: {what} (the limit is {}); write long lists of \
                 alternatives as `IN (…)`, and split what is left",
                self.max_depth
            )),
        }
    }
}

/// Most table references a statement may have once its common table expressions are
/// expanded: the planner copies a CTE's plan into every place that names it, so CTEs that each
/// name the one before twice make a plan that doubles with every CTE (16 of them took 18 s to
/// plan).
pub const MAX_EXPANDED_TABLES: u128 = 4096;

/// Finds `WITH` clauses whose expansion passes [`MAX_EXPANDED_TABLES`].
struct Expansion;

impl Visitor for Expansion {
    type Break = String;

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<String> {
        let Some(with) = &query.with else {
            return ControlFlow::Continue(());
        };
        // Each CTE's size: itself, plus every earlier CTE it names, expanded.
        let mut sizes: Vec<(String, u128)> = Vec::new();
        for cte in &with.cte_tables {
            let size = 1 + references(&*cte.query, &sizes);
            sizes.push((cte.alias.name.value.to_lowercase(), size));
        }
        let total = references(&*query.body, &sizes);
        if total.max(sizes.iter().map(|(_, s)| *s).max().unwrap_or(0)) > MAX_EXPANDED_TABLES {
            return ControlFlow::Break(format!(
                "the SQL is too complex: its common table expressions (WITH) name each other so often that the query \
                 expands to more than {MAX_EXPANDED_TABLES} table references; name each CTE \
                 fewer times, or split the query"
            ));
        }
        ControlFlow::Continue(())
    }
}

/// The expanded size of the CTEs of `sizes` that `node` names (each time it names them).
fn references<V: Visit>(node: &V, sizes: &[(String, u128)]) -> u128 {
    let mut total = 0u128;
    let _ = ast::visit_relations(node, |name: &ast::ObjectName| {
        let name = name.to_string().to_lowercase();
        if let Some((_, size)) = sizes.iter().rev().find(|(n, _)| *n == name) {
            total = total.saturating_add(*size);
        }
        ControlFlow::<()>::Continue(())
    });
    total
}

/// Walks a statement, keeping the current nesting level; stops as soon as it passes the limit,
/// so the walk itself never goes deeper than the limit.
pub(crate) struct Depth {
    limit: usize,
    level: usize,
    tables: usize,
    /// What each open query added to `level` (1 plus its set operations).
    pushed: Vec<usize>,
}

impl Depth {
    fn statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        match statement {
            Statement::Statement(s) => s.visit(self),
            Statement::Explain(e) => self.statement(&e.statement),
            Statement::CopyTo(c) => match &c.source {
                CopyToSource::Query(q) => q.visit(self),
                CopyToSource::Relation(_) => ControlFlow::Continue(()),
            },
            Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
        }
    }

    fn enter(&mut self, by: usize, what: &str) -> ControlFlow<String> {
        self.level += by;
        if self.level > self.limit {
            return ControlFlow::Break(format!("{what} nested more than {} deep", self.limit));
        }
        ControlFlow::Continue(())
    }
}

/// Set operations (`UNION`, `EXCEPT`, `INTERSECT`) in a query body, outside nested queries: a
/// chain of them parses into a tree as deep as it is long. Counted without recursion.
fn set_operations(body: &SetExpr) -> usize {
    let mut count = 0;
    let mut open = vec![body];
    while let Some(e) = open.pop() {
        if let SetExpr::SetOperation { left, right, .. } = e {
            count += 1;
            open.push(left);
            open.push(right);
        }
    }
    count
}

impl Visitor for Depth {
    type Break = String;

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<String> {
        let by = 1 + set_operations(&query.body);
        self.pushed.push(by);
        self.enter(by, "queries and set operations (UNION, EXCEPT, INTERSECT)")
    }

    fn post_visit_query(&mut self, _query: &ast::Query) -> ControlFlow<String> {
        self.level -= self.pushed.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _factor: &ast::TableFactor) -> ControlFlow<String> {
        // Joins plan into a tree as deep as the number of tables.
        self.tables += 1;
        if self.tables > self.limit {
            return ControlFlow::Break(format!("more than {} tables joined", self.limit));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &ast::Expr) -> ControlFlow<String> {
        self.enter(1, "expressions (operators, function calls, casts, CASE)")
    }

    fn post_visit_expr(&mut self, _expr: &ast::Expr) -> ControlFlow<String> {
        self.level -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn parse(sql: &str) -> Statement {
        let state = SessionContext::new().state();
        let dialect = state.config().options().sql_parser.dialect;
        state.sql_to_statement(sql, &dialect).expect("parses")
    }

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join(op))
    }

    #[test]
    fn shallow_statements_pass_and_deep_chains_are_refused() {
        let b = SqlBounds::default();
        assert!(
            b.check(&parse("SELECT 1 + 2 * 3 FROM t WHERE a IN (1, 2, 3)"))
                .is_ok()
        );
        assert!(b.check(&parse(&chain("+", 200))).is_ok());
        let e = b.check(&parse(&chain("+", 300))).expect_err("too deep");
        assert!(e.contains("nested more than 256 deep"), "{e}");
        let e = b
            .check(&parse(&format!("EXPLAIN {}", chain(" OR ", 300))))
            .expect_err("explain is walked too");
        assert!(e.contains("expressions"), "{e}");
        let unions = vec!["SELECT 1"; 300].join(" UNION ALL ");
        let e = b.check(&parse(&unions)).expect_err("set operations");
        assert!(e.contains("set operations"), "{e}");
        let joins = format!(
            "SELECT 1 FROM t0 {}",
            (1..300)
                .map(|i| format!("JOIN t{i} ON true"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let e = b.check(&parse(&joins)).expect_err("joins");
        assert!(e.contains("tables joined"), "{e}");
    }

    #[test]
    fn ctes_that_expand_exponentially_are_refused() {
        let b = SqlBounds::default();
        let doubling = |k: usize| {
            let mut ctes = vec!["c0 AS (SELECT 1 AS x)".to_string()];
            for i in 1..=k {
                ctes.push(format!(
                    "c{i} AS (SELECT * FROM c{p} UNION ALL SELECT * FROM c{p})",
                    p = i - 1
                ));
            }
            format!("WITH {} SELECT count(*) FROM c{k}", ctes.join(", "))
        };
        assert!(b.check(&parse(&doubling(8))).is_ok(), "256 references");
        let e = b
            .check(&parse(&doubling(16)))
            .expect_err("65536 references");
        assert!(e.contains("common table expressions"), "{e}");
        let e = b
            .check(&parse(&format!("EXPLAIN {}", doubling(20))))
            .expect_err("explained too");
        assert!(e.contains("common table expressions"), "{e}");
        // A CTE named many times once each is fine.
        let flat = format!(
            "WITH a AS (SELECT 1 AS x) SELECT * FROM {}",
            vec!["a"; 50].join(", ")
        );
        assert!(b.check(&parse(&flat)).is_ok());
    }

    #[test]
    fn the_length_is_checked_before_parsing() {
        let b = SqlBounds {
            max_sql_bytes: 10,
            max_depth: 4,
        };
        assert!(b.check_len("SELECT 1").is_ok());
        let e = b.check_len("SELECT 1 + 1").expect_err("long");
        assert!(e.contains("12 bytes") && e.contains("limit is 10"), "{e}");
    }
}
