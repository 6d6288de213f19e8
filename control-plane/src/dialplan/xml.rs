//! XML text → a tree of elements with file and line, after FreeSWITCH's pre-processing.
//!
//! Pre-processing happens while the tree is built, in document order:
//! `<X-PRE-PROCESS cmd="set" data="name=value"/>` defines a global,
//! `<X-PRE-PROCESS cmd="include" data="glob"/>` splices in the files the glob names
//! (an included file's `<include>` wrapper is dropped, its children take its place), and
//! `$${name}` in attribute values and text is replaced by the global's value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{DialplanError, Variables};

/// How deep includes may nest (a deeper chain is almost surely a cycle).
const MAX_INCLUDE_DEPTH: usize = 32;
/// How deep elements may nest.
const MAX_ELEMENT_DEPTH: usize = 256;

/// One element, with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub name: String,
    /// Attributes in document order, values unescaped and `$${}`-expanded.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Text and CDATA directly inside this element, concatenated.
    pub text: String,
    pub file: Arc<str>,
    pub line: usize,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// An error at this element.
    pub fn err(&self, message: impl Into<String>) -> DialplanError {
        DialplanError { file: self.file.to_string(), line: self.line, message: message.into() }
    }
}

/// Where a document comes from.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: Arc<str>,
    /// The directory includes are relative to; `None` when the text is not a file.
    pub dir: Option<&'a Path>,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: u64) -> usize {
    let end = usize::try_from(offset).unwrap_or(usize::MAX).min(text.len());
    text.as_bytes()[..end].iter().filter(|&&c| c == b'\n').count() + 1
}

/// Line numbers for offsets that only move forward, counted incrementally.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, offset: u64) -> usize {
        let end = usize::try_from(offset).unwrap_or(usize::MAX).min(self.text.len());
        if end < self.pos {
            return line_of(self.text, offset);
        }
        self.line += memchr::memchr_iter(b'\n', &self.text.as_bytes()[self.pos..end]).count();
        self.pos = end;
        self.line
    }
}

/// Parses `src` into its root element, pre-processing as it goes. `globals` receives
/// the `set` commands; `depth` is the include depth.
pub(crate) fn read_document(src: &Source, globals: &mut Variables, depth: usize) -> Result<Element, DialplanError> {
    let err = |line: usize, message: String| DialplanError { file: src.file.to_string(), line, message };
    // A UTF-8 byte order mark is not text outside the root; it holds no newline, so
    // line numbers are unchanged by skipping it.
    let text = src.text.strip_prefix('\u{feff}').unwrap_or(src.text);
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut lines = Lines { text, pos: 0, line: 1 };
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| err(line_of(text, reader.error_position()), format!("malformed XML: {e}")))?;
        let line = lines.at(pos);
        match event {
            Event::Start(e) | Event::Empty(e) if stack.len() >= MAX_ELEMENT_DEPTH => {
                return Err(err(
                    line,
                    format!(
                        "<{}> is nested more than {MAX_ELEMENT_DEPTH} elements deep",
                        String::from_utf8_lossy(e.name().as_ref())
                    ),
                ));
            }
            Event::Start(e) => {
                let el = start_element(src, &e, line, globals)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                let el = start_element(src, &e, line, globals)?;
                finish(src, el, &mut stack, &mut root, globals, depth)?;
            }
            Event::End(_) => {
                // quick-xml has checked that the end tag matches the open one.
                if let Some(mut el) = stack.pop() {
                    el.text = expand_globals(&el.text, globals).map_err(|m| el.err(m))?;
                    finish(src, el, &mut stack, &mut root, globals, depth)?;
                }
            }
            Event::Text(t) => {
                let s = t.xml_content(XmlVersion::Implicit1_0).map_err(|e| err(line, format!("malformed XML: {e}")))?;
                push_text(&mut stack, &s).map_err(|m| err(line_of_text(text, pos, &s), m))?;
            }
            Event::CData(t) => {
                let s = t.xml_content(XmlVersion::Implicit1_0).map_err(|e| err(line, format!("malformed XML: {e}")))?;
                push_text(&mut stack, &s).map_err(|m| err(line, m))?;
            }
            Event::GeneralRef(r) => {
                let c = resolve_ref(&r).map_err(|m| err(line, m))?;
                push_text(&mut stack, c.encode_utf8(&mut [0; 4])).map_err(|m| err(line, m))?;
            }
            Event::DocType(_) => {
                return Err(err(line, "<!DOCTYPE> is not allowed in a dialplan".into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(open.err(format!("malformed XML: <{}> is never closed (the file ends first)", open.name)));
    }
    root.ok_or_else(|| {
        err(
            line_of(text, text.len() as u64),
            "no root element: expected <include> or <document type=\"freeswitch/xml\">".into(),
        )
    })
}

/// The line where the first non-whitespace character of a text event starting at `pos` is.
fn line_of_text(text: &str, pos: u64, content: &str) -> usize {
    let lead = content.len() - content.trim_start().len();
    line_of(text, pos + lead as u64)
}

fn push_text(stack: &mut [Element], s: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(format!("text \"{}\" outside the root element", s.trim().chars().take(40).collect::<String>())),
    }
}

fn resolve_ref(r: &BytesRef) -> Result<char, String> {
    let name = r.decode().map_err(|e| format!("malformed XML: {e}"))?;
    if let Some(c) =
        r.resolve_char_ref().map_err(|e| format!("malformed XML: bad character reference &{name};: {e}"))?
    {
        return Ok(c);
    }
    match name.as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        _ => Err(format!("malformed XML: unknown entity &{name}; (only &lt; &gt; &amp; &quot; &apos; and &#N; exist)")),
    }
}

fn start_element(src: &Source, e: &BytesStart, line: usize, globals: &Variables) -> Result<Element, DialplanError> {
    let mut el = Element {
        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
        attrs: Vec::new(),
        children: Vec::new(),
        text: String::new(),
        file: src.file.clone(),
        line,
    };
    for a in e.attributes() {
        let a = a.map_err(|x| el.err(format!("malformed XML: {x}")))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|x| el.err(format!("malformed XML: attribute {key}: {x}")))?;
        let value = expand_globals(&value, globals).map_err(|m| el.err(m))?;
        el.attrs.push((key, value));
    }
    Ok(el)
}

/// Attaches a complete element to its parent (or makes it the root), running it first
/// if it is an `X-PRE-PROCESS` command.
fn finish(
    src: &Source,
    el: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
    globals: &mut Variables,
    depth: usize,
) -> Result<(), DialplanError> {
    let spliced =
        if el.name == "X-PRE-PROCESS" { preprocess(src, &el, stack.is_empty(), globals, depth)? } else { vec![el] };
    for el in spliced {
        match stack.last_mut() {
            Some(parent) => parent.children.push(el),
            None if root.is_none() => *root = Some(el),
            None => {
                return Err(el.err(format!(
                    "a second root element <{}>: a file has exactly one (wrap them in <include>)",
                    el.name
                )))
            }
        }
    }
    Ok(())
}

/// Runs one `X-PRE-PROCESS` command; returns the elements it puts in its place.
fn preprocess(
    src: &Source,
    el: &Element,
    top_level: bool,
    globals: &mut Variables,
    depth: usize,
) -> Result<Vec<Element>, DialplanError> {
    if let Some((k, _)) = el.attrs.iter().find(|(k, _)| k != "cmd" && k != "data") {
        return Err(el.err(format!("unknown attribute \"{k}\" on <X-PRE-PROCESS>: expected cmd and data")));
    }
    if let Some(child) = el.children.first() {
        return Err(child.err("<X-PRE-PROCESS> must be empty"));
    }
    let cmd =
        el.attr("cmd").ok_or_else(|| el.err("<X-PRE-PROCESS> without cmd: expected cmd=\"set\" or cmd=\"include\""))?;
    let data = el.attr("data").unwrap_or("");
    match cmd {
        "set" => {
            let (name, value) = data.split_once('=').filter(|(n, _)| !n.trim().is_empty()).ok_or_else(|| {
                el.err(format!("X-PRE-PROCESS set: data \"{data}\" is not of the form \"name=value\""))
            })?;
            globals.set(name.trim(), value);
            Ok(Vec::new())
        }
        "include" => {
            if top_level {
                return Err(el.err("X-PRE-PROCESS include must be inside an element (e.g. <include> or <context>)"));
            }
            let dir =
                src.dir.ok_or_else(|| el.err("X-PRE-PROCESS include needs a file on disk: use Dialplan::load"))?;
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(
                    el.err(format!("includes nest more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)"))
                );
            }
            let paths = glob(dir, data).map_err(|m| el.err(format!("X-PRE-PROCESS include \"{data}\": {m}")))?;
            let mut out = Vec::new();
            for path in paths {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| el.err(format!("X-PRE-PROCESS include: cannot read {}: {e}", path.display())))?;
                let sub = Source { text: &text, file: Arc::from(path.display().to_string()), dir: path.parent() };
                let included = read_document(&sub, globals, depth + 1)?;
                if included.name == "include" {
                    if let Some((k, _)) = included.attrs.first() {
                        return Err(included.err(format!("unknown attribute \"{k}\" on <include>")));
                    }
                    let stray = included.text.trim();
                    if !stray.is_empty() {
                        return Err(included.err(format!(
                            "unexpected text \"{}\" inside <include>",
                            stray.chars().take(40).collect::<String>()
                        )));
                    }
                    out.extend(included.children);
                } else {
                    out.push(included);
                }
            }
            Ok(out)
        }
        other => {
            Err(el.err(format!("X-PRE-PROCESS cmd=\"{other}\" is not supported: expected \"set\" or \"include\"")))
        }
    }
}

/// Replaces every `$${name}` with the global's value; an undefined global is an error.
pub(crate) fn expand_globals(s: &str, globals: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("$${") {
        out.push_str(&rest[..at]);
        let body = &rest[at + 3..];
        let end = body.find('}').ok_or_else(|| format!("unclosed $${{ in \"{s}\""))?;
        let name = &body[..end];
        let value = globals.get(name).ok_or_else(|| {
            format!("$${{{name}}} is not defined: define it with <X-PRE-PROCESS cmd=\"set\" data=\"{name}=...\"/> or pass it as a global")
        })?;
        out.push_str(value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The files `pattern` names, relative to `dir`, sorted. Wildcards (`*`, `?`) may only
/// appear in the last path component; a pattern without wildcards must name an
/// existing file, one with wildcards may match nothing.
fn glob(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if pattern.is_empty() {
        return Err("empty data: expected a file name or glob".into());
    }
    let full = dir.join(pattern);
    let name = full.file_name().and_then(|n| n.to_str()).ok_or("expected a file name or glob")?.to_string();
    let parent = full.parent().unwrap_or(dir).to_path_buf();
    if parent.to_string_lossy().contains(['*', '?']) {
        return Err("wildcards are only supported in the file name".into());
    }
    if !name.contains(['*', '?']) {
        if !full.is_file() {
            return Err(format!("{} does not exist", full.display()));
        }
        return Ok(vec![full]);
    }
    let entries = std::fs::read_dir(&parent).map_err(|e| format!("cannot list {}: {e}", parent.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            (!n.starts_with('.') || name.starts_with('.')) && wildcard_match(&name, &n)
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Shell-style match of `*` (any run) and `?` (one character).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
