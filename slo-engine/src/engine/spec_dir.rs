//! A directory of spec files: read it whole, and notice when any file changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::spec::{Slo, SpecError};

/// Every SLO in the `*.yaml` / `*.yml` files of `dir` (sorted by name); all problems of all
/// files at once.
pub fn load_dir(dir: &Path) -> Result<Vec<Slo>, Vec<SpecError>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            vec![SpecError {
                file: dir.display().to_string(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the SLO directory: {e}"),
            }]
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match crate::spec_file::parse_file(&f) {
            Ok(s) => slos.extend(s),
            Err(e) => errors.extend(e),
        }
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for s in &slos {
        if let Some(other) = names.insert(s.name.clone(), s.source.clone()) {
            errors.push(SpecError {
                file: s.source.clone(),
                line: s.pos.line,
                column: s.pos.column,
                field: "name".into(),
                message: format!("{:?} is also the name of an SLO in {other}", s.name),
            });
        }
    }
    if errors.is_empty() {
        Ok(slos)
    } else {
        Err(errors)
    }
}

/// Names, sizes and modification times of the spec files: changes when a file does.
pub(super) fn dir_digest(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}
