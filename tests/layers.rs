//! The library's layers, checked: `src/lib.rs` declares them once, bottom
//! up, in its `# Layers` list (a line `N. name: module, module, …` each);
//! this test reads every source file and fails, naming the file and line,
//! when a module names one of a higher layer (`crate::x` in a `use` or a
//! path), and when two files of one module import each other in a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The layers `src/lib.rs` declares, bottom up: each top-level module's
/// layer number.
fn declared_layers() -> BTreeMap<String, (usize, String)> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).expect("src/lib.rs");
    let mut in_layers = false;
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if doc.starts_with("# ") {
            in_layers = doc == "# Layers";
            continue;
        }
        if !in_layers {
            continue;
        }
        // `1. vocabulary: vocab, invitation, …`
        let Some((number, rest)) = doc.split_once(". ") else { continue };
        let Ok(n) = number.parse::<usize>() else { continue };
        let (name, modules) = rest.split_once(':').expect("a layer line is `N. name: modules`");
        for m in modules.split(',') {
            let m = m.trim().trim_matches('`').trim_end_matches('.');
            if !m.is_empty() {
                assert!(layers.insert(m.to_owned(), (n, name.trim().to_owned())).is_none(), "{m} is in two layers");
            }
        }
    }
    assert!(!layers.is_empty(), "src/lib.rs declares no `# Layers` list");
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and
/// the binaries' files).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(SRC).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    if rel.components().count() == 1 {
        let name = first.trim_end_matches(".rs").to_owned();
        return (name != "lib" && name != "main").then_some(name);
    }
    (first != "bin").then_some(first)
}

/// The code of a line, without its comment (a `//` outside a string is
/// rare enough here to cut at).
fn code(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    line
}

/// Every top-level module a line names through `crate::`.
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code(line);
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        // `crate::{a, b::c}` names several.
        if let Some(group) = after.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for part in group.split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "self" {
                    out.push(name);
                }
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_names_one_of_a_higher_layer() {
    let layers = declared_layers();
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        // Test files of a module (`tests.rs`, `*_tests.rs`) stand outside the flow.
        let stem = file.file_stem().unwrap().to_string_lossy();
        if stem == "tests" || stem.ends_with("_tests") {
            continue;
        }
        let Some((mine, my_name)) = layers.get(&module) else {
            wrong.push(format!("{}: module {module} is in no layer of src/lib.rs", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        // Tests of a module may use anything: they stand outside the flow.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in text.lines().enumerate() {
            for named in named_modules(line) {
                if let Some((theirs, their_name)) = layers.get(&named) {
                    if theirs > mine {
                        wrong.push(format!(
                            "{}:{}: {module} ({my_name}) names {named} ({their_name}), a higher layer: {}",
                            file.strip_prefix(SRC).unwrap().display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers of src/lib.rs:\n{}", wrong.join("\n"));
}

/// The sibling files of one module a file imports (`super::x`,
/// `crate::m::x`), its `mod.rs` not counted (re-exports are the module's
/// front, not a dependency).
fn sibling_imports(file: &Path, siblings: &BTreeSet<String>, module: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap().to_owned();
    let mut out = BTreeSet::new();
    for line in text.lines().map(code) {
        for prefix in ["super::".to_owned(), format!("crate::{module}::")] {
            let mut rest = line;
            while let Some(at) = rest.find(&prefix) {
                let after = &rest[at + prefix.len()..];
                let names: Vec<String> = match after.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|p| p.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
                        .collect(),
                    None => vec![after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()],
                };
                out.extend(names.into_iter().filter(|n| siblings.contains(n)));
                rest = after;
            }
        }
    }
    out
}

#[test]
fn no_two_files_of_a_module_import_each_other() {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(SRC).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && path.file_name().unwrap() != "bin" {
            dirs.push(path);
        }
    }
    let mut cycles = Vec::new();
    for dir in dirs {
        let module = dir.file_name().unwrap().to_string_lossy().into_owned();
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs") && p.file_name().unwrap() != "mod.rs")
            .collect();
        let names: BTreeSet<String> =
            files.iter().map(|f| f.file_stem().unwrap().to_string_lossy().into_owned()).collect();
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|f| (f.file_stem().unwrap().to_string_lossy().into_owned(), sibling_imports(f, &names, &module)))
            .collect();
        // A cycle: a file that reaches itself.
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, path)) = stack.pop() {
                for next in &graph[&at] {
                    if next == start {
                        cycles.push(format!("{module}: {} → {start}", path.join(" → ")));
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "files of one module that import each other:\n{}", cycles.join("\n"));
}
