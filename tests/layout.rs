//! The shape of the house, checked on every run: no import circle between the modules of a
//! crate (each file is a node; `use` and inline `crate::`/`super::` paths are the edges, resolved
//! through `pub use` re-exports), and no source file over 1,000 lines unless its header says why
//! (a `//! Long file:` line).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target" && n != ".git") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src` (`lib.rs` is the root, `a/mod.rs` is `a`).
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("lib" | "mod" | "main")) {
        parts.pop();
    }
    parts
}

/// The code without comments, string and char literals, and `#[cfg(test)] mod ... { }` blocks.
fn code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if text[i..].starts_with("/*") {
            i = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
        } else if (b[i] == b'r' || b[i] == b'b')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && let Some(hashes) = raw_string_start(&text[i..])
        {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + text[i..].find('"').unwrap() + 1;
            i = text[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            i = j + 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && char_literal(&text[i..]).is_some() {
            i += char_literal(&text[i..]).unwrap();
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    strip_test_modules(&out)
}

/// `r"`, `r#"`, `br"`...: the number of `#`.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.chars().take_while(|c| *c == '#').count();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{1F600}'`), not a lifetime.
fn char_literal(s: &str) -> Option<usize> {
    let mut it = s.char_indices().skip(1);
    let (_, c) = it.next()?;
    if c == '\\' {
        let end = s[2..].find('\'')?;
        return Some(end + 3);
    }
    let (j, close) = it.next()?;
    (close == '\'').then_some(j + 1)
}

fn strip_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let rest = &out[start..];
        let Some(brace) = rest.find('{') else { break };
        if !rest[..brace].contains("mod ") {
            // a test-only item that is not a module: drop the attribute only
            out.replace_range(start..start + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0;
        let mut end = out.len();
        for (k, c) in out[start + brace..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + brace + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(start..end, "");
    }
    out
}

/// `a::{b, c::{d, e as f}}` as its leaf paths (`a::b`, `a::c::d`, `a::c::e`).
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or_default().replace(' ', "")];
    };
    let prefix = tree[..open].replace(' ', "");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(|i| expand(i.trim()))
        .map(|leaf| {
            if leaf == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{leaf}")
            }
        })
        .collect()
}

/// A path as seen from `module`, made absolute (`None` when it leaves the crate).
fn absolute(module: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base = match parts.first().copied() {
        Some("crate") => {
            parts.remove(0);
            Vec::new()
        }
        Some("super" | "self") => {
            let mut base = module.clone();
            while let Some(p) = parts.first().copied().filter(|p| *p == "super" || *p == "self") {
                if p == "super" {
                    base.pop();
                }
                parts.remove(0);
            }
            base
        }
        Some(first) => {
            let mut child = module.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            module.clone()
        }
        None => return None,
    };
    base.extend(parts.iter().map(|p| (*p).to_string()));
    Some(base)
}

/// The import graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let mut refs: HashMap<Module, Vec<Module>> = HashMap::new();
    let mut reexports: HashMap<Module, HashMap<String, Module>> = HashMap::new();
    for f in &files {
        let m = module_of(src, f);
        let text = code(&std::fs::read_to_string(f).unwrap());
        let mut found = Vec::new();
        let mut rest = text.as_str();
        while let Some(k) = rest.find("use ") {
            let before = &rest[..k];
            let is_item = k == 0 || before.ends_with(['\n', ' ', '{', ';', '}']) && !before.ends_with("r#");
            let public = before.trim_end().ends_with("pub") || before.trim_end().ends_with(')');
            let after = &rest[k + 4..];
            let Some(end) = after.find(';') else { break };
            if is_item && !after.starts_with(' ') {
                for leaf in expand(&after[..end]) {
                    if let Some(a) = absolute(&m, &leaf, &modules) {
                        if public && let Some(name) = a.last() {
                            reexports
                                .entry(m.clone())
                                .or_default()
                                .insert(name.clone(), a.clone());
                        }
                        found.push(a);
                    }
                }
            }
            rest = &after[end..];
        }
        for start in ["crate::", "super::"] {
            let mut at = 0;
            while let Some(k) = text[at..].find(start) {
                let pos = at + k;
                let prev = text[..pos].chars().next_back();
                if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    let path: String = text[pos..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    let path = path.trim_end_matches(':');
                    // `use super::{a, b}` names `a` and `b` (read above), not the parent itself
                    if path.contains("::")
                        && let Some(a) = absolute(&m, path, &modules)
                    {
                        found.push(a);
                    }
                }
                at = pos + start.len();
            }
        }
        refs.insert(m, found);
    }
    let resolve = |mut path: Module| -> Module {
        for _ in 0..8 {
            let k = (0..=path.len())
                .rev()
                .find(|k| modules.contains(&path[..*k]))
                .unwrap_or(0);
            let (owner, rest) = (path[..k].to_vec(), &path[k..]);
            match rest
                .first()
                .and_then(|name| reexports.get(&owner).and_then(|r| r.get(name)))
            {
                Some(target) if *target != path => {
                    let mut next = target.clone();
                    next.extend(rest[1..].iter().cloned());
                    path = next;
                }
                _ => return owner,
            }
        }
        path
    };
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, found) in refs {
        let set = edges.entry(m.clone()).or_default();
        for r in found {
            let target = resolve(r);
            if target != m && !target.is_empty() {
                set.insert(target);
            }
        }
    }
    edges
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: HashMap<&'a Module, usize>,
        low: HashMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.edges.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_crate_has_an_import_circle() {
    let root = workspace();
    for krate in ["pipeline", "features", "models", "sinks", "bin"] {
        let edges = graph(&root.join(krate).join("src"));
        assert!(edges.len() > 1, "{krate}: no modules found");
        let found = circles(&edges);
        let shown: Vec<String> = found
            .iter()
            .map(|c| c.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" <-> "))
            .collect();
        assert!(found.is_empty(), "{krate}: import circles: {shown:#?}");
    }
    // the checker sees a circle where there is one
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\npub use a::X;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "pub mod b;\npub struct X;\nuse crate::a::b::{Y, Z as W};\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/b.rs"),
        "// use crate::a::X;\nfn f() -> crate::X { todo!() }\n",
    )
    .unwrap();
    assert_eq!(circles(&graph(src)).len(), 1);
    std::fs::write(
        src.join("a/b.rs"),
        "/// crate::X in a comment\nconst S: &str = \"crate::X\";\n",
    )
    .unwrap();
    assert!(circles(&graph(src)).is_empty());
    // a child that imports its siblings through `super::{...}` does not depend on its parent...
    std::fs::write(src.join("a/c.rs"), "pub struct C;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "pub mod b;\npub mod c;\npub struct X;\nuse b::*;\n",
    )
    .unwrap();
    std::fs::write(src.join("a/b.rs"), "use super::{c::C, c};\n").unwrap();
    assert!(circles(&graph(src)).is_empty());
    // ... but one that names a parent's item through them does
    std::fs::write(src.join("a/b.rs"), "use super::{c::C, X};\n").unwrap();
    assert_eq!(circles(&graph(src)).len(), 1);
}

#[test]
fn long_files_say_why() {
    let mut files = Vec::new();
    rust_files(&workspace(), &mut files);
    let mut long = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines = text.lines().count();
        let says_why = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .any(|l| l.starts_with("//! Long file:"));
        if lines > 1000 && !says_why {
            long.push(format!("{} ({lines} lines)", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these, or say why at the top (`//! Long file: ...`): {long:?}"
    );
}
