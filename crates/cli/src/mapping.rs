//! `erpsync mapping test|eval`: mappings tried and tested from the command line, against the
//! configuration's own flows, without touching any system.

use crate::MappingCommand;
use anyhow::{Context, Result, bail};
use erpsync_engine::config::Config;
use erpsync_mapping::{Applied, parse_tests, run_test};
use erpsync_model::{Record, envelope};
use std::io::Read;
use std::process::ExitCode;

pub fn run(config: &Config, action: &MappingCommand) -> Result<ExitCode> {
    match action {
        MappingCommand::Test { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let cases = match parse_tests(&text) {
                Ok(cases) => cases,
                Err(errors) => {
                    let lines: Vec<String> =
                        errors.iter().map(|error| format!("  {}: {error}", file.display())).collect();
                    bail!("the test file has problems:\n{}", lines.join("\n"));
                }
            };
            let mut failed = 0;
            for case in &cases {
                let Some(flow) = config.flow(&case.flow) else {
                    failed += 1;
                    println!("FAIL {}: there is no flow {:?} in {}", case.name, case.flow, config.source.display());
                    continue;
                };
                let result = run_test(&flow.mapping, case);
                if result.passed {
                    println!("ok   {}", result.name);
                } else {
                    failed += 1;
                    println!("FAIL {}: {}", result.name, result.message);
                }
            }
            println!("{} passed, {failed} failed", cases.len() - failed);
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        MappingCommand::Eval { flow, record } => {
            let flow_config = config.flow(flow).with_context(|| format!("there is no flow {flow:?}"))?;
            let mut text = String::new();
            if record.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(record).with_context(|| format!("reading {}", record.display()))?;
            }
            let record = parse_record(&text)?;
            match flow_config.mapping.apply(&record) {
                Ok(Applied::Mapped(output)) => {
                    println!("{}", serde_json::to_string_pretty(&output)?);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(Applied::Skipped { reason }) => {
                    println!("skipped: {reason}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => bail!("mapping of flow {flow:?}: {error}"),
            }
        }
    }
}

/// A record as canonical JSON (`{"entity": "product", ...}`) or in the versioned form.
fn parse_record(text: &str) -> Result<Record> {
    if let Ok(record) = envelope::from_slice(text.as_bytes()) {
        return Ok(record);
    }
    serde_json::from_str(text).context("the record is neither canonical JSON with an \"entity\" nor the versioned form")
}
