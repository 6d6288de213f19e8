//! The element tree → the dialplan's typed form, validated strictly.
//!
//! Every element and attribute FreeSWITCH's XML dialplan knows is accepted; anything
//! else is an error naming the file and line, so that a typo cannot silently change
//! routing.

use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};

use super::vars::{is_false, is_true};
use super::xml::Element;
use super::DialplanError;

/// How deep conditions may nest (FreeSWITCH's recursion limit).
const MAX_NESTING: usize = 100;

/// Applications that may run inline, during the hunt.
pub(crate) const INLINE_APPS: [&str; 4] = ["set", "unset", "export", "log"];

/// A whole dialplan: its contexts in document order.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub contexts: Vec<Context>,
}

/// `<context name>`.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub name: String,
    pub extensions: Vec<Extension>,
}

/// `<extension name continue>`.
#[derive(Debug, Clone)]
pub(crate) struct Extension {
    pub name: Option<String>,
    pub continue_on_match: bool,
    pub conditions: Vec<Condition>,
}

/// `<condition>`, with its actions, anti-actions and nested conditions.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub file: Arc<str>,
    pub line: usize,
    pub test: Test,
    pub brk: Break,
    /// `require-nested` (default true): if false, a failing nested block does not make
    /// this level fail.
    pub require_nested: bool,
    pub actions: Vec<Action>,
    pub anti_actions: Vec<Action>,
    pub nested: Vec<Condition>,
}

/// What a condition tests.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// No field: always true.
    Absolute,
    /// `field` =~ `expression`.
    Field { field: Field, pattern: Pattern },
    /// `regex="all|any|xor"` over `<regex>` children.
    Regexes { mode: RegexMode, items: Vec<RegexItem> },
}

/// `<regex field expression/>` inside a `regex=` condition.
#[derive(Debug, Clone)]
pub(crate) struct RegexItem {
    /// No field: the item always passes.
    pub field: Option<Field>,
    pub pattern: Pattern,
}

/// How a `regex=` condition combines its `<regex>` children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegexMode {
    All,
    Any,
    Xor,
}

/// A condition's `field`.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    /// A variable's name (caller profile fields are variables here).
    Variable(String),
    /// A template containing `$`, expanded against the variables.
    Template(String),
}

/// A regular expression as written, compiled at load time unless it contains `${`
/// (then it is expanded and compiled at hunt time).
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub source: String,
    pub compiled: Option<Regex>,
}

/// `break=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Break {
    OnFalse,
    OnTrue,
    Always,
    Never,
}

/// `<action>` or `<anti-action>`.
#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub app: String,
    pub data: String,
    pub inline: bool,
    /// `loop="N"`: how many times the application is queued (default 1).
    pub repeat: u32,
}

fn unknown_attr(el: &Element, allowed: &[&str]) -> Result<(), DialplanError> {
    match el.attrs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(el.err(format!(
            "unknown attribute \"{k}\" on <{}>: expected {}",
            el.name,
            if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
        ))),
        None => Ok(()),
    }
}

fn no_text(el: &Element) -> Result<(), DialplanError> {
    let t = el.text.trim();
    if t.is_empty() {
        Ok(())
    } else {
        Err(el.err(format!("unexpected text \"{}\" inside <{}>", t.chars().take(40).collect::<String>(), el.name)))
    }
}

fn unknown_child(child: &Element, parent: &Element, expected: &str) -> DialplanError {
    child.err(format!("unknown element <{}> inside <{}>: expected {expected}", child.name, parent.name))
}

fn boolean(el: &Element, key: &str, default: bool) -> Result<bool, DialplanError> {
    match el.attr(key) {
        None => Ok(default),
        Some(v) if is_true(v) => Ok(true),
        Some(v) if is_false(v) => Ok(false),
        Some(v) => Err(el.err(format!("{key}=\"{v}\" on <{}>: expected true or false", el.name))),
    }
}

/// Builds the document from its root element.
pub(crate) fn build(root: &Element) -> Result<Document, DialplanError> {
    let section = match root.name.as_str() {
        "include" => {
            unknown_attr(root, &[])?;
            root
        }
        "document" => {
            unknown_attr(root, &["type"])?;
            if root.attr("type") != Some("freeswitch/xml") {
                return Err(root.err("<document> needs type=\"freeswitch/xml\""));
            }
            no_text(root)?;
            let mut section = None;
            for child in &root.children {
                if child.name != "section" {
                    return Err(unknown_child(child, root, "<section name=\"dialplan\">"));
                }
                unknown_attr(child, &["name", "description"])?;
                if child.attr("name") != Some("dialplan") {
                    return Err(child.err(format!(
                        "<section name=\"{}\"> is not a dialplan: expected name=\"dialplan\"",
                        child.attr("name").unwrap_or("")
                    )));
                }
                if section.is_some() {
                    return Err(child.err("a second <section name=\"dialplan\">"));
                }
                section = Some(child);
            }
            section.ok_or_else(|| root.err("<document> has no <section name=\"dialplan\">"))?
        }
        other => {
            return Err(root.err(format!(
                "unknown root element <{other}>: expected <include> or <document type=\"freeswitch/xml\">"
            )))
        }
    };
    no_text(section)?;
    let mut contexts: Vec<Context> = Vec::new();
    for child in &section.children {
        if child.name != "context" {
            return Err(unknown_child(child, section, "<context>"));
        }
        let ctx = context(child)?;
        if contexts.iter().any(|c| c.name == ctx.name) {
            return Err(child.err(format!("context \"{}\" is defined twice", ctx.name)));
        }
        contexts.push(ctx);
    }
    Ok(Document { contexts })
}

fn context(el: &Element) -> Result<Context, DialplanError> {
    unknown_attr(el, &["name"])?;
    no_text(el)?;
    let name = el.attr("name").filter(|n| !n.is_empty()).ok_or_else(|| el.err("<context> without name"))?.to_string();
    let extensions = el
        .children
        .iter()
        .map(|x| if x.name == "extension" { extension(x) } else { Err(unknown_child(x, el, "<extension>")) })
        .collect::<Result<_, _>>()?;
    Ok(Context { name, extensions })
}

fn extension(el: &Element) -> Result<Extension, DialplanError> {
    unknown_attr(el, &["name", "continue"])?;
    no_text(el)?;
    let conditions = el
        .children
        .iter()
        .map(|c| if c.name == "condition" { condition(c, 0) } else { Err(unknown_child(c, el, "<condition>")) })
        .collect::<Result<_, _>>()?;
    Ok(Extension {
        name: el.attr("name").map(str::to_string),
        continue_on_match: boolean(el, "continue", false)?,
        conditions,
    })
}

fn field(s: &str) -> Field {
    if s.contains('$') {
        Field::Template(s.to_string())
    } else {
        Field::Variable(s.to_string())
    }
}

/// The expression of `el`: its `<expression>` child's text, else its `expression` attribute.
fn expression_of(el: &Element, child: Option<&Element>) -> Result<Pattern, DialplanError> {
    let (src, at) = match child {
        Some(x) => {
            unknown_attr(x, &[])?;
            if let Some(c) = x.children.first() {
                return Err(unknown_child(c, x, "text or CDATA"));
            }
            if el.attr("expression").is_some() {
                return Err(
                    x.err(format!("<{}> has both an expression attribute and an <expression> element", el.name))
                );
            }
            (x.text.as_str(), x)
        }
        None => (el.attr("expression").unwrap_or(""), el),
    };
    pattern(src).map_err(|m| at.err(m))
}

/// Compiles a pattern unless it needs hunt-time expansion.
pub(crate) fn pattern(source: &str) -> Result<Pattern, String> {
    let compiled = if source.contains("${") { None } else { Some(compile(source)?) };
    Ok(Pattern { source: source.to_string(), compiled })
}

/// Compiles an expression the way FreeSWITCH's `switch_regex_perform` reads it: a
/// leading `_` is an Asterisk-style pattern (N → [2-9], X → [0-9], Z → [1-9],
/// `.` → `.*`, anchored), `/expr/flags` takes flags `i` (caseless) and `s` (dot
/// matches newline). Matching is byte-wise and ASCII, like PCRE without UTF mode.
pub(crate) fn compile(source: &str) -> Result<Regex, String> {
    let mut expr = source.to_string();
    if let Some(ast) = source.strip_prefix('_') {
        let mut r = String::from("^");
        for c in ast.chars() {
            match c {
                'N' => r.push_str("[2-9]"),
                'X' => r.push_str("[0-9]"),
                'Z' => r.push_str("[1-9]"),
                '.' => r.push_str(".*"),
                c => r.push(c),
            }
        }
        r.push('$');
        expr = r;
    }
    let (mut caseless, mut dotall) = (false, false);
    if let Some(body) = expr.strip_prefix('/') {
        let (re, flags) = body
            .rsplit_once('/')
            .ok_or_else(|| format!("bad regular expression \"{source}\": missing the closing '/' delimiter"))?;
        caseless = flags.contains('i');
        dotall = flags.contains('s');
        expr = re.to_string();
    }
    RegexBuilder::new(&expr)
        .unicode(false)
        .case_insensitive(caseless)
        .dot_matches_new_line(dotall)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            format!("bad regular expression \"{source}\": {last}")
        })
}

fn condition(el: &Element, depth: usize) -> Result<Condition, DialplanError> {
    if depth >= MAX_NESTING {
        return Err(el.err(format!("conditions nest more than {MAX_NESTING} deep")));
    }
    no_text(el)?;
    let regex_mode = el.attr("regex");
    let allowed: &[&str] = if regex_mode.is_some() {
        &["regex", "break", "require-nested"]
    } else {
        &["field", "expression", "break", "require-nested"]
    };
    if let Some((k, _)) = el.attrs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        let hint = match k.as_str() {
            "field" | "expression" => " (a regex= condition takes its fields from <regex> children)".to_string(),
            "wday" | "mon" | "mday" | "yday" | "week" | "mweek" | "hour" | "minute" | "minute-of-day"
            | "time-of-day" | "date-time" | "year" => " (time-of-day conditions are not supported yet)".to_string(),
            _ => String::new(),
        };
        return Err(el.err(format!("unknown attribute \"{k}\" on <condition>: expected {}{hint}", allowed.join(", "))));
    }
    let brk = match el.attr("break").map(str::to_ascii_lowercase).as_deref() {
        None | Some("on-false") => Break::OnFalse,
        Some("on-true") => Break::OnTrue,
        Some("always") => Break::Always,
        Some("never") => Break::Never,
        Some(other) => return Err(el.err(format!("break=\"{other}\": expected on-false, on-true, always or never"))),
    };
    let mut actions = Vec::new();
    let mut anti_actions = Vec::new();
    let mut nested = Vec::new();
    let mut regexes = Vec::new();
    let mut expression_el = None;
    for child in &el.children {
        match child.name.as_str() {
            "action" => actions.push(action(child)?),
            "anti-action" => anti_actions.push(action(child)?),
            "condition" => nested.push(condition(child, depth + 1)?),
            "regex" if regex_mode.is_some() => regexes.push(regex_item(child)?),
            "expression" if regex_mode.is_none() => {
                if expression_el.is_some() {
                    return Err(child.err("a second <expression> in one <condition>"));
                }
                expression_el = Some(child);
            }
            _ => {
                let expected = if regex_mode.is_some() {
                    "<regex>, <action>, <anti-action> or <condition>"
                } else {
                    "<action>, <anti-action>, <condition> or <expression>"
                };
                return Err(unknown_child(child, el, expected));
            }
        }
    }
    let test = match regex_mode {
        Some(mode) => {
            let mode = match mode.to_ascii_lowercase().as_str() {
                "all" => RegexMode::All,
                "any" => RegexMode::Any,
                "xor" => RegexMode::Xor,
                other => return Err(el.err(format!("regex=\"{other}\": expected all, any or xor"))),
            };
            if regexes.is_empty() {
                return Err(el.err(format!(
                    "<condition regex=\"{}\"> without <regex> children",
                    el.attr("regex").unwrap_or("")
                )));
            }
            Test::Regexes { mode, items: regexes }
        }
        None => {
            let pattern = expression_of(el, expression_el)?;
            match el.attr("field") {
                Some(f) => Test::Field { field: field(f), pattern },
                None => Test::Absolute,
            }
        }
    };
    Ok(Condition {
        file: el.file.clone(),
        line: el.line,
        test,
        brk,
        require_nested: boolean(el, "require-nested", true)?,
        actions,
        anti_actions,
        nested,
    })
}

fn regex_item(el: &Element) -> Result<RegexItem, DialplanError> {
    unknown_attr(el, &["field", "expression"])?;
    no_text(el)?;
    let mut expression_el = None;
    for child in &el.children {
        if child.name != "expression" || expression_el.is_some() {
            return Err(unknown_child(child, el, "at most one <expression>"));
        }
        expression_el = Some(child);
    }
    Ok(RegexItem { field: el.attr("field").map(field), pattern: expression_of(el, expression_el)? })
}

fn action(el: &Element) -> Result<Action, DialplanError> {
    unknown_attr(el, &["application", "data", "inline", "loop"])?;
    if let Some(c) = el.children.first() {
        return Err(unknown_child(c, el, "no elements (data goes in data=\"...\")"));
    }
    let app = el
        .attr("application")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| el.err(format!("<{}> without application: expected application=\"name\"", el.name)))?
        .to_string();
    // FreeSWITCH takes non-empty element text in preference to the data attribute.
    let data = if el.text.is_empty() { el.attr("data").unwrap_or("").to_string() } else { el.text.clone() };
    let inline = boolean(el, "inline", false)?;
    if inline && !INLINE_APPS.contains(&app.as_str()) {
        return Err(el.err(format!("application \"{app}\" cannot run inline: only {} may", INLINE_APPS.join(", "))));
    }
    let repeat = match el.attr("loop") {
        None => 1,
        Some(n) => n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n <= 1000)
            .ok_or_else(|| el.err(format!("loop=\"{n}\": expected a count from 0 to 1000")))?,
    };
    Ok(Action { app, data, inline, repeat })
}
