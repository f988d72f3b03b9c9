//! The repository's documentation stands alone: it cites its own pages (every relative link
//! and anchor resolves), never a document the repository does not have or the tracker's
//! issues and commits, and every full configuration it shows is accepted by the filter.

mod common;

use common::shipped::{read, repo_path};
use envoy_harness::runner::repo_root;
use regex::Regex;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Directories whose files are the project's own (build outputs and installs excluded).
const SOURCES: [&str; 9] = [
    "docs",
    "examples",
    "envoy",
    "src",
    "host-tests",
    "scripts",
    "wit",
    ".ci",
    "proptest-regressions",
];
const SKIPPED_DIRS: [&str; 4] = ["target", ".git", ".venv-envoy", "node_modules"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                walk(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// Every text file of the project: the top-level files and the source directories.
fn project_files() -> Vec<(PathBuf, String)> {
    let root = repo_root();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    for dir in SOURCES {
        walk(&root.join(dir), &mut paths);
    }
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            Some((p, text))
        })
        .collect()
}

fn markdown_files() -> Vec<(PathBuf, String)> {
    project_files()
        .into_iter()
        .filter(|(p, _)| p.extension().and_then(|e| e.to_str()) == Some("md"))
        .collect()
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn nothing_cites_documents_issues_or_commits_the_repository_does_not_have() {
    // Spelled in pieces so that this file does not cite them itself.
    let contract = ["SPEC", ".md"].concat();
    let tracker =
        Regex::new(r"\b([Ii]ssue|[Cc]ommit)s? #?[0-9]+\b|\b[Cc]ommit [0-9a-f]{7,40}\b").unwrap();
    let mut found = Vec::new();
    for (path, text) in project_files() {
        for (n, line) in text.lines().enumerate() {
            if line.contains(&contract) || tracker.is_match(line) {
                found.push(format!("{}:{}: {}", shown(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in markdown_files() {
        let dir = path.parent().unwrap().to_path_buf();
        for capture in link.captures_iter(&text) {
            let target = &capture[1];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !resolved.exists() {
                broken.push(format!("{}: {target} (no such file)", shown(&path)));
                continue;
            }
            if !fragment.is_empty() && resolved.is_file() {
                let headings = anchors(&read(&resolved));
                if !headings.iter().any(|h| h == fragment) {
                    broken.push(format!("{}: {target} (no such heading)", shown(&path)));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn every_configuration_the_documentation_shows_is_accepted() {
    let mut shown_configs = 0;
    for (path, text) in markdown_files() {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("```json\n") {
            let block = &rest[at + "```json\n".len()..];
            let end = block.find("```").unwrap();
            rest = &block[end..];
            let Ok(value) = serde_json::from_str::<Value>(&block[..end]) else {
                continue;
            };
            if value.get("virtual_keys").is_none() {
                continue;
            }
            shown_configs += 1;
            if let Err(e) = governance::config::parse(&value.to_string()) {
                panic!("{}: a configuration the filter refuses: {e}", shown(&path));
            }
        }
    }
    assert!(shown_configs >= 2, "found {shown_configs}");
}

#[test]
fn the_docs_index_lists_every_page() {
    let index = read(&repo_path("docs/README.md"));
    for entry in std::fs::read_dir(repo_path("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "README.md" {
            assert!(
                index.contains(&format!("]({name})")),
                "docs/README.md lacks {name}"
            );
        }
    }
}
