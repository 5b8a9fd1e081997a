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

// ---------------------------------------------------------------------------------------------
// The rest of the docs: links that lead somewhere, every command and flag a page shows, every
// fault kind and scenario key of `mcpo chaos`, and figures that name where they come from.

/// The pages a user reads: the README, CONTRIBUTING and everything in `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A Markdown page taken apart: the lines of its fenced code blocks, its inline code spans, its
/// prose with the code taken out, and its headings.
struct Page {
    fenced: Vec<String>,
    spans: Vec<String>,
    prose: String,
    headings: Vec<String>,
}

fn parse_page(text: &str) -> Page {
    let mut fenced = Vec::new();
    let mut outside = String::new();
    let mut headings = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            fenced.push(line.to_string());
        } else {
            if line.starts_with('#') {
                headings.push(line.trim_start_matches('#').trim().to_string());
            }
            outside.push_str(line);
            outside.push('\n');
        }
    }
    // Inline code: a run of backticks opens a span that the same run closes (it may cross a
    // line break, as in Markdown).
    let mut spans = Vec::new();
    let mut prose = String::new();
    let mut rest = outside.as_str();
    while let Some(start) = rest.find('`') {
        prose.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|c| *c == '`').count();
        let fence = "`".repeat(run);
        let after = &rest[start + run..];
        match after.find(&fence) {
            Some(end) => {
                spans.push(after[..end].trim().to_string());
                prose.push(' ');
                rest = &after[end + run..];
            }
            None => {
                rest = after;
            }
        }
    }
    prose.push_str(rest);
    Page {
        fenced,
        spans,
        prose,
        headings,
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_relative_link_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in pages() {
        let page = parse_page(&read(&file));
        let mut rest = page.prose.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].trim();
            rest = &after[end..];
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !dest.exists() {
                broken.push(format!("{}: {target}: no such file", shown(&file)));
                continue;
            }
            if !anchor.is_empty() && dest.extension().is_some_and(|e| e == "md") {
                let headings = parse_page(&read(&dest)).headings;
                if !headings.iter().any(|h| slug(h) == anchor) {
                    broken.push(format!(
                        "{}: {target}: no heading `#{anchor}` in {}",
                        shown(&file),
                        shown(&dest)
                    ));
                }
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the parser broken?"
    );
    assert!(
        broken.is_empty(),
        "links that lead nowhere:\n{}",
        broken.join("\n")
    );
}

/// Every subcommand `mcpo --help` lists, and every long option of each, spelt with its aliases.
fn commands() -> Vec<(String, std::collections::BTreeSet<String>)> {
    use clap::CommandFactory as _;
    fn longs(cmd: &clap::Command) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::from(["help".to_string()]);
        for arg in cmd.get_arguments() {
            out.extend(arg.get_long().map(String::from));
            out.extend(
                arg.get_all_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(String::from),
            );
        }
        out
    }
    let cli = mcpo::cli::Cli::command();
    let mut out = vec![(String::new(), longs(&cli))];
    for sub in cli.get_subcommands() {
        out.push((sub.get_name().to_string(), longs(sub)));
    }
    out
}

#[test]
fn every_subcommand_is_documented() {
    use clap::CommandFactory as _;
    let corpus: String = pages().iter().map(|p| read(p)).collect();
    let cli = mcpo::cli::Cli::command();
    let listed: Vec<&str> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name())
        .collect();
    assert!(
        listed.contains(&"chaos") && listed.contains(&"healthcheck"),
        "{listed:?}"
    );
    let missing: Vec<&&str> = listed
        .iter()
        .filter(|name| !corpus.contains(&format!("mcpo {name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "subcommands no page shows (`mcpo NAME` in README.md or docs/): {missing:?}"
    );
}

/// The flags of every `mcpo ...` command line in `tokens` (one shell line, split), checked
/// against what the binary accepts; a quoted word that is itself an `mcpo` command line (a
/// chaos `--target`) is checked too.
fn check_command_line(
    tokens: &[String],
    known: &[(String, std::collections::BTreeSet<String>)],
    unknown: &mut Vec<String>,
) {
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        if let Some(inner) = token.strip_prefix("mcpo ") {
            let inner = format!("mcpo {inner}");
            check_command_line(&split_words(&inner), known, unknown);
            continue;
        }
        if token != "mcpo" {
            continue;
        }
        let sub = tokens
            .get(i)
            .filter(|t| known.iter().any(|(name, _)| !name.is_empty() && name == *t));
        let flags = match sub {
            Some(name) => {
                i += 1;
                &known.iter().find(|(n, _)| n == name).unwrap().1
            }
            None => &known[0].1,
        };
        while i < tokens.len() {
            let word = tokens[i]
                .trim_start_matches(['[', '('])
                .trim_end_matches([']', ')', ',', '.']);
            if word == "--"
                || ["|", "||", "&", "&&", ";", ">", "2>&1"].contains(&word)
                || word.starts_with('>')
            {
                break;
            }
            if let Some(flag) = word.strip_prefix("--").filter(|f| !f.is_empty()) {
                let name = flag.split('=').next().unwrap_or(flag);
                if !flags.contains(name) {
                    unknown.push(format!("--{name} (in `{}`)", tokens.join(" ")));
                }
            }
            if tokens[i].starts_with("mcpo ") {
                check_command_line(&tokens[i..=i], known, unknown);
            }
            i += 1;
        }
    }
}

/// Shell words, quotes honoured; a line a shell would not accept is split at whitespace.
fn split_words(line: &str) -> Vec<String> {
    shlex::split(line).unwrap_or_else(|| {
        line.split_whitespace()
            .map(|w| w.trim_matches(['\'', '"']).to_string())
            .collect()
    })
}

#[test]
fn every_flag_in_a_documented_command_line_exists() {
    let known = commands();
    let mut unknown = Vec::new();
    let mut lines = 0;
    for file in pages() {
        let page = parse_page(&read(&file));
        let spans = page.spans.iter().map(|s| s.replace('\n', " "));
        for text in page.fenced.iter().cloned().chain(spans) {
            for line in text.lines() {
                // Shell comments end the command.
                let line = line.split(" #").next().unwrap_or(line);
                if !line.contains("mcpo ") {
                    continue;
                }
                lines += 1;
                let mut found = Vec::new();
                check_command_line(&split_words(line), &known, &mut found);
                unknown.extend(found.into_iter().map(|f| format!("{}: {f}", shown(&file))));
            }
        }
    }
    assert!(
        lines > 20,
        "only {lines} command lines found: is the parser broken?"
    );
    assert!(
        unknown.is_empty(),
        "flags the docs show that the binary does not accept:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_flag_checker_sees_a_misspelt_flag() {
    let mut unknown = Vec::new();
    check_command_line(
        &split_words("mcpo chaos x.yaml --target 'mcpo --prot {port}' --report r.json"),
        &commands(),
        &mut unknown,
    );
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].starts_with("--prot "), "{unknown:?}");
}

/// The keys the scenario parser allows at the place `yaml` puts an unknown key, read from its
/// error message ("unknown key; allowed here: a, b, c").
fn allowed_keys(yaml: &str) -> Vec<String> {
    let err = mcpo::chaos::scenario::parse_scenario_str(yaml, "probe.yaml")
        .expect_err("the probe has an unknown key")
        .to_string();
    let list = err
        .split("allowed here: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of allowed keys in: {err}"));
    list.trim().split(", ").map(String::from).collect()
}

/// A scenario with `zz` (an unknown key) wherever `{..}` says.
fn probe(
    top: &str,
    server: &str,
    proxy: &str,
    load: &str,
    call: &str,
    fault: &str,
    slo: &str,
) -> String {
    format!(
        "name: p\nduration: 10s\n{top}servers: [{{name: s, transport: streamable-http{server}}}]\n\
         proxy: {{{proxy}}}\n\
         load: {{rate: 1, calls: [{{tool: s/echo, args: {{message: x}}{call}}}]{load}}}\n\
         faults: [{{at: 1s, kind: crash{fault}}}]\nslo: {{{slo}}}\n"
    )
}

/// The text of a page from the heading `heading` to the next heading of its level or above.
fn section(doc: &str, heading: &str) -> Option<String> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = doc.lines().skip_while(|l| l.trim() != heading);
    lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            !(hashes > 0 && hashes <= level && l.chars().nth(hashes) == Some(' '))
        })
        .collect();
    Some(body.join("\n"))
}

#[test]
fn every_fault_kind_and_scenario_key_is_in_the_chaos_page() {
    let doc = read(&root().join("docs/chaos.md"));
    let mut missing = Vec::new();
    let mut need = |heading: &str, keys: Vec<String>| match section(&doc, heading) {
        None => missing.push(format!("no section `{heading}`")),
        Some(text) => {
            for key in keys {
                if !text.contains(&format!("| `{key}` |")) {
                    missing.push(format!("`{key}`: no row in `{heading}`"));
                }
            }
        }
    };
    let zz = ", zz: 1";
    need(
        "### Top level",
        allowed_keys(&probe("zz: 1\n", "", "", "", "", "", "")),
    );
    need(
        "### `servers[]`",
        allowed_keys(&probe("", zz, "", "", "", "", "")),
    );
    need(
        "### `proxy`",
        allowed_keys(&probe("", "", "zz: 1", "", "", "", "")),
    );
    need(
        "### `load`",
        allowed_keys(&probe("", "", "", zz, "", "", "")),
    );
    need(
        "### `load.calls[]`",
        allowed_keys(&probe("", "", "", "", zz, "", "")),
    );
    need(
        "## `slo`",
        allowed_keys(&probe("", "", "", "", "", "", "zz: 1")),
    );
    // Each kind: its own section, with a row for every key it takes besides the common three.
    let mut common = std::collections::BTreeSet::new();
    for kind in mcpo::chaos::scenario::FAULT_KINDS {
        let yaml = probe("", "", "", "", "", "", "")
            .replace("kind: crash", &format!("kind: {kind}, zz: 1"));
        let keys = allowed_keys(&yaml);
        common.extend(keys.iter().cloned());
        let own = keys
            .into_iter()
            .filter(|k| !["at", "kind", "server"].contains(&k.as_str()))
            .collect();
        need(&format!("### `{kind}`"), own);
    }
    need(
        "### `faults[]`: the keys every kind takes",
        vec!["at".into(), "kind".into(), "server".into()],
    );
    // The fake's tools, and the exit statuses.
    let tools = mcpo::fake::tool_definitions();
    let names: Vec<String> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.len() > 10, "{names:?}");
    need("## The fake's tools", names);
    need(
        "## Exit status",
        ["0", "1", "2", "3"].map(String::from).to_vec(),
    );
    assert!(common.len() > 10, "{common:?}");
    assert!(
        missing.is_empty(),
        "docs/chaos.md does not describe what `mcpo chaos` accepts:\n{}",
        missing.join("\n")
    );
}

/// Whether `text` names a date (`2026-12-02`), a commit (a backticked hex hash) and the script
/// that produced a figure (`benches/...` or `cargo bench`).
fn names_its_source(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    let date = (0..bytes.len().saturating_sub(9)).any(|i| {
        let w = &bytes[i..i + 10];
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[7] == b'-'
            && w[8..].iter().all(u8::is_ascii_digit)
    });
    let commit = parse_page(text).spans.iter().any(|s| {
        (7..=40).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    });
    let script = text.contains("benches/") || text.contains("cargo bench");
    match (date, commit, script) {
        (false, _, _) => Err("no date (YYYY-MM-DD)"),
        (_, false, _) => Err("no commit (a `hash` in backticks)"),
        (_, _, false) => Err("no script (benches/... or cargo bench)"),
        _ => Ok(()),
    }
}

#[test]
fn every_benchmark_table_names_its_date_commit_and_script() {
    let doc = read(&root().join("docs/benchmarks.md"));
    let mut problems = Vec::new();
    let mut before = String::new();
    let mut in_table = false;
    let mut tables = 0;
    for line in doc.lines() {
        if line.starts_with('|') {
            if !in_table {
                tables += 1;
                if let Err(why) = names_its_source(&before) {
                    problems.push(format!(
                        "table {tables} (`{line}`): {why} in the text before it"
                    ));
                }
            }
            in_table = true;
            before.clear();
        } else {
            in_table = false;
            before.push_str(line);
            before.push('\n');
        }
    }
    assert!(tables >= 6, "only {tables} tables found");
    assert!(
        problems.is_empty(),
        "docs/benchmarks.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_figure_in_the_readme_names_its_date_commit_and_script() {
    let readme = read(&root().join("README.md"));
    let why = section(&readme, "## Why switch").expect("README.md: a `## Why switch` section");
    let bullets: Vec<&str> = why.split("\n- ").skip(1).collect();
    assert!(
        (3..=5).contains(&bullets.len()),
        "three to five reasons, a short list: {why}"
    );
    for bullet in bullets {
        let bullet = bullet.split("\n\n").next().unwrap_or(bullet);
        if bullet.chars().any(|c| c.is_ascii_digit())
            && let Err(problem) = names_its_source(bullet)
        {
            panic!("README.md, a figure with {problem}: {bullet}");
        }
    }
}
