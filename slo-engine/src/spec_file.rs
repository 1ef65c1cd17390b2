//! A spec file, whichever format it is written in: native specs ([`spec::parse`]) or OpenSLO v1
//! documents ([`openslo::import`]). Both formats depend on [`spec`]; this module on both.

use std::path::Path;

use crate::openslo;
use crate::spec::{self, Slo, SpecError};

/// Parses a spec file: native, or OpenSLO v1 documents (imported, see [`crate::openslo`]).
pub fn parse_file(path: &Path) -> Result<Vec<Slo>, Vec<SpecError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![SpecError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    if openslo::is_openslo(&text) {
        return openslo::import(&name, &text);
    }
    spec::parse(&name, &text)
}
