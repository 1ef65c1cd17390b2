//! `sightline slo ...`: tools for SLO spec files.

use std::path::PathBuf;

use sightline_slo::counter::CompiledSlo;

#[derive(Debug, clap::Subcommand)]
pub enum SloCommand {
    /// Convert OpenSLO v1 documents (SLO, and the SLI documents they reference) to Sightline's
    /// native YAML, printed on standard output. The SLO directory also accepts OpenSLO files
    /// as they are.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check SLO spec files: YAML syntax, every field, and the SQL expressions against the
    /// tables' columns. Prints each problem as FILE:LINE:COLUMN: FIELD: MESSAGE and exits with
    /// status 1 if there is any.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(cmd: SloCommand) -> anyhow::Result<bool> {
    match cmd {
        SloCommand::Validate { files } => Ok(validate(&files)),
        SloCommand::Import { files } => Ok(import(&files)),
    }
}

/// Prints what is wrong with `files`; true when nothing is.
fn validate(files: &[PathBuf]) -> bool {
    let mut ok = true;
    let mut names = std::collections::BTreeMap::new();
    for file in files {
        let mut errors = Vec::new();
        let slos = match sightline_slo::spec_file::parse_file(file) {
            Ok(slos) => slos,
            Err(e) => {
                errors.extend(e);
                Vec::new()
            }
        };
        for slo in &slos {
            if let Err(e) = CompiledSlo::compile(slo, 0) {
                errors.extend(e);
            }
            if let Some(other) = names.insert(slo.name.clone(), file.display().to_string())
                && other != file.display().to_string()
            {
                errors.push(sightline_slo::SpecError {
                    file: file.display().to_string(),
                    line: slo.pos.line,
                    column: slo.pos.column,
                    field: "name".into(),
                    message: format!("{:?} is also the name of an SLO in {other}", slo.name),
                });
            }
        }
        if errors.is_empty() {
            let list: Vec<&str> = slos.iter().map(|s| s.name.as_str()).collect();
            println!(
                "{}: ok ({} SLOs: {})",
                file.display(),
                list.len(),
                list.join(", ")
            );
        } else {
            ok = false;
            errors.sort_by_key(|e| (e.line, e.column));
            for e in errors {
                println!("{e}");
            }
        }
    }
    ok
}

/// Prints the native form of OpenSLO files; true when every file converted.
fn import(files: &[PathBuf]) -> bool {
    let mut ok = true;
    let mut out = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                ok = false;
                continue;
            }
        };
        match sightline_slo::openslo::import(&name, &text) {
            Ok(slos) => out.extend(slos.iter().map(sightline_slo::spec::render::to_yaml)),
            Err(errors) => {
                ok = false;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    println!("{}", out.join("---\n").trim_end());
    ok
}
