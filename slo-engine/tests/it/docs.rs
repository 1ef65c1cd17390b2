//! Every example in docs/slo.md and docs/alerting.md works: each YAML block is a valid spec
//! whose expressions compile against the tables, and each SQL block runs.

use sightline_slo::counter::CompiledSlo;
use sightline_slo::spec;

use crate::{CHECKOUT, Sim, T0};

const DOCS: [&str; 2] = ["slo.md", "alerting.md"];

fn blocks(doc: &str, lang: &str) -> Vec<String> {
    let path = format!(
        "{}/../docs/{doc}",
        sightline_common::durable::manifest_dir(env!("CARGO_MANIFEST_DIR")).display()
    );
    let text = std::fs::read_to_string(&path).expect("the doc exists");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_yaml_example_is_a_valid_slo() {
    let yaml: Vec<String> = DOCS.iter().flat_map(|d| blocks(d, "yaml")).collect();
    assert!(yaml.len() >= 6, "found {} YAML examples", yaml.len());
    for block in yaml {
        let slos = if sightline_slo::openslo::is_openslo(&block) {
            sightline_slo::openslo::import("docs/slo.md", &block)
        } else {
            spec::parse("docs/slo.md", &block)
        }
        .unwrap_or_else(|e| panic!("{e:#?}\nin\n{block}"));
        for slo in slos {
            CompiledSlo::compile(&slo, 0).unwrap_or_else(|e| panic!("{e:#?}\nin\n{block}"));
        }
    }
}

#[tokio::test]
async fn every_sql_example_runs() {
    let mut sim = Sim::new(CHECKOUT, T0).await;
    sim.steady("checkout", T0 - 3600 * 1_000_000_000, T0, 20)
        .await;
    sim.engine.tick().await.expect("tick");
    let sql: Vec<String> = DOCS.iter().flat_map(|d| blocks(d, "sql")).collect();
    assert!(sql.len() >= 4);
    let q = sim
        .store
        .query_engine(Default::default())
        .await
        .expect("engine");
    for block in sql {
        let out = q
            .execute(&block)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin\n{block}"));
        assert!(
            out.num_rows() > 0 || block.contains("slo_alerts") || block.contains("notifications"),
            "no rows from\n{block}"
        );
    }
}
