//! Guards the shape of the code (`ARCHITECTURE.md`, "Invariants"): the graph of `crate::`
//! references between top-level modules must stay acyclic, so each module can be read — and
//! replaced — knowing only the modules below it; and no function outside tests grows past 80
//! lines unless a `// Long:` comment says why.
//!
//! The check reads the source rather than asking the compiler: every `crate::NAME` outside a
//! comment, including each name inside `use crate::{a, b::c}`, is an edge from the file's
//! top-level module to `NAME`. A file's `#[cfg(test)] mod` (by convention its last item) is
//! left out: a unit test may check a lower module's output through a higher one (as
//! `sources::values` does through the planner's rules) without the code depending on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// All `.rs` files below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).expect("read src dir");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/sources/gitlab.rs` → `sources`); `None` for
/// the crate roots, which only declare and re-export.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file below src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level names of a `use` group's body (`a, b::{c, d}, e::f` → `a`, `b`, `e`).
fn group_heads(body: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_start = true;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => at_start = true,
            c if at_start && depth == 0 && is_ident(c) => {
                let end = body[i..]
                    .find(|c| !is_ident(c))
                    .map_or(body.len(), |n| i + n);
                heads.push(body[i..end].to_string());
                at_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// Every module named after `crate::` in `code` (comments and test modules removed).
fn references(code: &str) -> BTreeSet<String> {
    let code = code
        .find("#[cfg(test)]\nmod ")
        .map_or(code, |end| &code[..end]);
    let code: String = code
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let preceded_by_ident = rest[..i].chars().next_back().is_some_and(is_ident);
        rest = &rest[i + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(body) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(body.len(), |(n, _)| n);
            out.extend(group_heads(&body[..end]));
        } else {
            let end = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
            out.insert(rest[..end].to_string());
        }
    }
    out
}

/// A cycle in `graph`, as the path of modules that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn module_graph_is_acyclic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let code = fs::read_to_string(file).expect("read source file");
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(references(&code).into_iter().filter(|m| *m != module));
    }
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    // Names that are not modules (`crate::serve`, a re-export) are no edges.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|m| modules.contains(m));
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between modules: {}", cycle.join(" → "));
    }
}

#[test]
fn references_reads_groups_and_paths() {
    let code = "use crate::{a, b::{c, d}, e::f};\nlet x = crate::g::h(); // crate::i\nmy_crate::j\n\
                #[cfg(test)]\nmod tests {\n    use crate::k;\n}";
    let found: Vec<String> = references(code).into_iter().collect();
    assert_eq!(found, ["a", "b", "e", "g"]);
}

/// The longest a non-test function may be without a `// Long:` comment saying why.
const MAX_FN_LINES: usize = 80;

/// Non-test functions in `code` longer than [`MAX_FN_LINES`] that no `// Long:` comment
/// (among the comments and attributes right above the `fn`) excuses, as (line, name, length).
/// Relies on rustfmt's layout: a function's closing brace is the first line after its
/// signature that holds only `}` at the `fn`'s indentation.
fn long_functions(code: &str) -> Vec<(usize, String, usize)> {
    let code = code
        .find("#[cfg(test)]\nmod ")
        .map_or(code, |end| &code[..end]);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let rest = line.trim_start();
        let indent = &line[..line.len() - rest.len()];
        let Some(name) = fn_name(rest) else {
            continue;
        };
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue; // a declaration without a body (trait method, extern)
        }
        let close = format!("{indent}}}");
        let Some(end) = (open + 1..lines.len()).find(|&k| lines[k] == close) else {
            continue;
        };
        let length = end - i + 1;
        let excused = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .take_while(|l| l.starts_with("//") || l.starts_with("#["))
            .any(|l| l.starts_with("// Long:"));
        if length > MAX_FN_LINES && !excused {
            out.push((i + 1, name, length));
        }
    }
    out
}

/// The name of the function a trimmed line declares (`pub(crate) async fn run(` → `run`).
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    if let Some(r) = rest.strip_prefix("pub") {
        rest = match r.strip_prefix('(') {
            Some(r) => r.split_once(") ")?.1,
            None => r.strip_prefix(' ')?,
        };
    }
    for qualifier in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_string())
}

#[test]
fn functions_are_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut long = Vec::new();
    for file in &files {
        let code = fs::read_to_string(file).expect("read source file");
        let rel = file.strip_prefix(&src).expect("file below src");
        for (line, name, length) in long_functions(&code) {
            long.push(format!(
                "src/{}:{line}: {name} is {length} lines",
                rel.display()
            ));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them, or say why in a `// Long:` comment \
         right above the `fn`):\n{}",
        long.join("\n")
    );
}

#[test]
fn long_functions_finds_long_bodies_and_honours_the_excuse() {
    let body = "    x();\n".repeat(MAX_FN_LINES);
    let code = format!(
        "pub(crate) async fn long(a: u8) {{\n{body}}}\n\
         fn short() {{\n    y();\n}}\n\
         /// Doc.\n// Long: one match over every sender.\n#[allow(x)]\nfn excused() {{\n{body}}}\n\
         trait T {{\n    fn declared(&self);\n}}\n\
         #[cfg(test)]\nmod tests {{\n    fn in_test() {{\n{body}    }}\n}}\n"
    );
    let found = long_functions(&code);
    assert_eq!(found, [(1, "long".to_string(), MAX_FN_LINES + 2)]);
}
