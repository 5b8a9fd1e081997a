//! `docs/configuration.md` cannot drift from the binary: its option tables are what
//! `mcpo config-reference` prints from the CLI definitions, every config-file key the parser
//! accepts is described, and every `MCPO_*` variable the code reads is named.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mcpo::reference::{BEGIN, END};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn doc() -> String {
    std::fs::read_to_string(root().join("docs/configuration.md")).unwrap()
}

#[test]
fn the_option_tables_are_what_the_binary_prints() {
    let out = Command::new(common::mcpo_bin())
        .arg("config-reference")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let generated = String::from_utf8(out.stdout).unwrap();
    // Every serve flag is in what is generated, so a hidden or lost table would show here.
    for flag in [
        "--port",
        "--api-key",
        "--tool-timeout",
        "--cache-max-size",
        "--hot-reload",
    ] {
        assert!(
            generated.contains(&format!("`{flag}`")),
            "{flag} not generated"
        );
    }
    let doc = doc();
    let (start, end) = (doc.find(BEGIN).unwrap(), doc.find(END).unwrap());
    let in_doc = doc[start + BEGIN.len()..end].trim();
    assert!(
        in_doc == generated.trim(),
        "docs/configuration.md is out of date with the CLI: run \
         `cargo run -q -- config-reference --write docs/configuration.md`.\n--- generated ---\n{generated}"
    );
}

#[test]
fn every_config_key_the_parser_accepts_is_described() {
    let doc = doc();
    let missing: Vec<String> = mcpo::reference::config_keys()
        .into_iter()
        .filter(|k| !doc.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys with no row in docs/configuration.md: {missing:?}"
    );
    assert!(mcpo::reference::config_keys().len() > 30);
}

/// Every `"MCPO_..."` string literal in the library's code (test modules excluded).
fn variables_read_in(dir: &Path, found: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            variables_read_in(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, _) in code.match_indices("\"MCPO_") {
            let name: String = code[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            found.push((name, path.clone()));
        }
    }
}

#[test]
fn every_mcpo_variable_the_code_reads_is_named() {
    let mut found = Vec::new();
    variables_read_in(&root().join("src"), &mut found);
    assert!(
        found.iter().any(|(n, _)| n == "MCPO_TOOL_TIMEOUT"),
        "{found:?}"
    );
    let doc = doc();
    let missing: Vec<_> = found
        .into_iter()
        .filter(|(name, _)| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "MCPO_* variables read by the code but not in docs/configuration.md: {missing:?}"
    );
}
