//! The configuration reference, generated from the definitions it documents, so that
//! `docs/configuration.md` cannot drift from them: every `serve` flag with its short form,
//! environment variable, default and help (from clap), and every config-file key (from the
//! parser's own key lists). `mcpo config-reference` prints it; a test compares the document.

use clap::CommandFactory;

use crate::cli::Cli;

/// The Markdown tables of `mcpo serve`'s options, one per help heading, in help order.
pub fn flags_markdown() -> String {
    let cli = Cli::command();
    let Some(serve) = cli.find_subcommand("serve") else {
        return String::new();
    };
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for arg in serve.get_arguments() {
        if arg.is_hide_set() || arg.get_id() == "help" {
            continue;
        }
        let heading = arg.get_help_heading().unwrap_or("Other").to_string();
        let name = match (arg.get_long(), arg.get_short()) {
            (Some(long), Some(short)) => format!("`--{long}`, `-{short}`"),
            (Some(long), None) => format!("`--{long}`"),
            (None, Some(short)) => format!("`-{short}`"),
            (None, None) => format!("`-- {}`", arg.get_id().as_str().to_uppercase()),
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| match v.to_string_lossy() {
                v if v.is_empty() => "`\"\"`".to_string(),
                v => format!("`{v}`"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        let row = format!("| {name} | {env} | {default} | {help} |");
        match sections.iter_mut().find(|(h, _)| *h == heading) {
            Some((_, rows)) => rows.push(row),
            None => sections.push((heading, vec![row])),
        }
    }
    let mut out = String::new();
    for (heading, rows) in sections {
        out.push_str(&format!(
            "### {heading}\n\n| option | environment | default | meaning |\n| --- | --- | --- | --- |\n"
        ));
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// Every key a config file may hold, as `section.key` (`mcpServers.<name>.command`, ...).
pub fn config_keys() -> Vec<String> {
    crate::config::file_keys()
        .iter()
        .flat_map(|(section, keys)| keys.iter().map(move |k| format!("{section}{k}")))
        .collect()
}

/// The markers around the generated part of `docs/configuration.md`.
pub const BEGIN: &str = "<!-- generated:flags:begin -->";
pub const END: &str = "<!-- generated:flags:end -->";

/// Rewrites the part of the Markdown file at `path` between [`BEGIN`] and [`END`] with
/// [`flags_markdown`].
pub fn splice_into(path: &std::path::Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        return Err(std::io::Error::other(format!(
            "no {BEGIN} ... {END} markers in the file"
        )));
    };
    let spliced = format!(
        "{}{BEGIN}\n{}{}",
        &text[..start],
        flags_markdown(),
        &text[end..]
    );
    std::fs::write(path, spliced)
}
