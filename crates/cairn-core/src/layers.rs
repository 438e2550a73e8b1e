//! The layers of this crate, checked: each module imports only the modules
//! below it, so there is no import cycle and data flows one way. Code is
//! read from the source files (comments and tests left out); an import of a
//! name re-exported at the crate root must name its module instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: a module may import modules of earlier layers
/// and its own folder, never a later layer.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["config"],
    &["store"],
    &["exec"],
    &["plan"],
    &["catalog"],
    &["dataframe"],
    &["cluster"],
    &["context", "periodic"],
    &["lib"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module '{module}' is in no layer of layers.rs"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `store/commit.rs` -> `["store", "commit"]`; `store/mod.rs` -> `["store"]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths of a use tree starting at `rest` (after `crate::` or
/// `super::`): `a::b`, `a::{b, c::d}` -> `[a, b]`, `[a, b]`, `[a, c, d]`.
fn paths(rest: &str) -> Vec<Vec<String>> {
    let ident: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let after = &rest[ident.len()..];
    if ident.is_empty() {
        let Some(inner) = rest.strip_prefix('{') else {
            return vec![Vec::new()];
        };
        // Split the group at its top-level commas.
        let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(paths(inner[start..i].trim_start()));
                    return out;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(paths(inner[start..i].trim_start()));
                    start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    match after.strip_prefix("::") {
        Some(next) => paths(next)
            .into_iter()
            .map(|mut p| {
                p.insert(0, ident.clone());
                p
            })
            .collect(),
        None => vec![vec![ident]],
    }
}

/// Every path a file names with `crate::` or `super::`, as module paths
/// from the crate root.
fn imports(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        out.extend(paths(&code[i + "crate::".len()..]));
    }
    // `super` is the folder of a file, and the parent of a folder's mod.rs:
    // either way the module path without its last part.
    let parent = &module[..module.len().saturating_sub(1)];
    for (i, _) in code.match_indices("super::") {
        for path in paths(&code[i + "super::".len()..]) {
            out.push(parent.iter().cloned().chain(path).collect());
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut problems = BTreeSet::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&root, f)).collect();
    for file in &files {
        let module = module_of(&root, file);
        let top = module.first().cloned().unwrap_or_else(|| "lib".into());
        let text = std::fs::read_to_string(file).unwrap();
        if matches!(top.as_str(), "store" | "exec") && code(&text).contains("LogicalPlan") {
            problems.insert(format!(
                "{}: {top} names LogicalPlan; planning hands it what it needs",
                file.display()
            ));
        }
        for path in imports(&module, &code(&text)) {
            let Some(first) = path.first() else { continue };
            if first.chars().next().is_some_and(char::is_uppercase) {
                problems.insert(format!(
                    "{}: imports crate::{first}, a root re-export; name its module",
                    file.display()
                ));
                continue;
            }
            if first == &top {
                // Within a folder: record file-level edges for the cycle check.
                let target: Vec<String> = (1..=path.len())
                    .rev()
                    .map(|n| path[..n].to_vec())
                    .find(|p| known.contains(p))
                    .unwrap_or_default();
                if !target.is_empty() && target != module {
                    edges
                        .entry(module.join("::"))
                        .or_default()
                        .insert(target.join("::"));
                }
                continue;
            }
            if top != "lib" && layer(first) >= layer(&top) && first != &top {
                problems.insert(format!(
                    "{}: {top} imports {first}, which is not below it",
                    file.display()
                ));
            }
        }
    }
    // No cycle among the files of one folder either.
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    problems.insert(format!("import cycle: {} -> {start}", trail.join(" -> ")));
                } else if !trail.contains(next) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The check finds what it is there to find.
#[test]
fn a_cycle_and_an_upward_import_are_found() {
    let module = vec!["store".to_string(), "commit".to_string()];
    let found = imports(
        &module,
        &code("use crate::plan::x;\nuse super::{files::y, names::{a, b}};"),
    );
    let strings = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        found,
        vec![
            strings(&["plan", "x"]),
            strings(&["store", "files", "y"]),
            strings(&["store", "names", "a"]),
            strings(&["store", "names", "b"]),
        ]
    );
    assert!(layer("plan") > layer("store"));
    assert_eq!(
        code("a // crate::plan\n#[cfg(test)]\nmod tests { crate::x }"),
        "a "
    );
}
