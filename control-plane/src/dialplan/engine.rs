//! CS_ROUTING: hunting a context for a channel, as mod_dialplan_xml's `dialplan_hunt`
//! and `parse_exten` do.
//!
//! Extensions are tried in order. In each, conditions are evaluated in order: a true
//! condition queues its actions (with `$N` from its own match), a false one its
//! anti-actions; `break` decides whether the next condition is looked at, and nested
//! conditions are evaluated after their parent's actions when the parent let the
//! extension proceed. An extension "matches" when the last condition evaluated let it
//! proceed (true, or false with anti-actions); hunting stops at the first match unless
//! the extension has `continue="true"`. Actions queued by an extension that did not
//! match stay queued, as in FreeSWITCH.

use regex::bytes::Regex;

use super::ast::{compile, Action, Break, Condition, Context, Document, Field, Pattern, RegexMode, Test};
use super::vars::{expand_with, is_true, Lookup};
use super::{AppCall, HuntError, Variables};

/// The variable `export` appends exported names to.
const EXPORT_VARS: &str = "export_vars";

/// One hunt in progress.
pub(crate) struct Hunt<'a> {
    vars: &'a mut Variables,
    /// Variable changes of queued (not yet executed) `set`, `unset` and `export`, in
    /// order: later queued applications' data sees them, as it would in CS_EXECUTE.
    /// Conditions do not (they see only `vars`), as in FreeSWITCH.
    pending: Vec<(String, Option<String>)>,
    apps: Vec<AppCall>,
}

/// `vars` with the queued changes on top.
struct Overlay<'a> {
    vars: &'a Variables,
    pending: &'a [(String, Option<String>)],
}

impl Lookup for Overlay<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        match self.pending.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some((_, v)) => v.as_deref(),
            None => self.vars.get(name),
        }
    }
}

/// The outcome of one condition's test.
struct Outcome {
    truth: bool,
    /// `$0..$N` for the actions; empty when the expression has no group.
    captures: Vec<Option<String>>,
}

/// Finds `context` (falling back to `global`, as FreeSWITCH does) and hunts it.
pub(crate) fn hunt(doc: &Document, context: &str, vars: &mut Variables) -> Result<Vec<AppCall>, HuntError> {
    let ctx: &Context = doc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .or_else(|| doc.contexts.iter().find(|c| c.name == "global"))
        .ok_or_else(|| HuntError::UnknownContext { context: context.to_string() })?;
    // auto_hunt: start at the extension named after the destination number, if any.
    let start = if vars.get("auto_hunt").is_some_and(is_true) {
        let dest = vars.get("destination_number").unwrap_or("");
        ctx.extensions.iter().position(|x| x.name.as_deref() == Some(dest)).unwrap_or(0)
    } else {
        0
    };
    let mut h = Hunt { vars, pending: Vec::new(), apps: Vec::new() };
    for ext in &ctx.extensions[start..] {
        let matched = h.conditions(&ext.conditions, true)?;
        if matched && !ext.continue_on_match {
            break;
        }
    }
    Ok(h.apps)
}

impl Hunt<'_> {
    /// Evaluates one level of conditions; returns whether it lets the extension proceed.
    fn conditions(&mut self, conds: &[Condition], require_nested: bool) -> Result<bool, HuntError> {
        let proceed = self.conditions_inner(conds)?;
        Ok(proceed || !require_nested)
    }

    fn conditions_inner(&mut self, conds: &[Condition]) -> Result<bool, HuntError> {
        let mut proceed = false;
        for c in conds {
            let out = self.test(c)?;
            proceed = out.truth;
            if out.truth {
                for a in &c.actions {
                    self.queue(a, &out.captures);
                }
            } else {
                for a in &c.anti_actions {
                    // Anti-actions get no `$N` substitution (their condition did not match).
                    self.queue(a, &[]);
                }
                if !c.anti_actions.is_empty() {
                    proceed = true;
                }
            }
            let stop = match c.brk {
                Break::OnFalse => !out.truth,
                Break::OnTrue => out.truth,
                Break::Always => true,
                Break::Never => false,
            };
            if stop {
                break;
            }
            if proceed && !c.nested.is_empty() {
                proceed = self.conditions(&c.nested, c.require_nested)?;
                if !proceed {
                    if c.brk == Break::Never {
                        continue;
                    }
                    return Ok(false);
                }
            }
        }
        Ok(proceed)
    }

    fn test(&self, c: &Condition) -> Result<Outcome, HuntError> {
        match &c.test {
            Test::Absolute => Ok(Outcome { truth: true, captures: Vec::new() }),
            Test::Field { field, pattern } => self.matches(c, field, pattern),
            Test::Regexes { mode, items } => {
                let (mut pass, mut fail) = (0usize, 0usize);
                let mut captures = Vec::new();
                for item in items {
                    let out = match &item.field {
                        Some(f) => self.matches(c, f, &item.pattern)?,
                        None => Outcome { truth: true, captures: Vec::new() },
                    };
                    if out.truth {
                        pass += 1;
                        if !out.captures.is_empty() {
                            captures = out.captures;
                        }
                        if *mode == RegexMode::Any {
                            break;
                        }
                    } else {
                        fail += 1;
                        if *mode == RegexMode::All {
                            break;
                        }
                    }
                }
                let truth = match mode {
                    RegexMode::All => fail == 0,
                    RegexMode::Any => pass > 0,
                    RegexMode::Xor => pass == 1,
                };
                Ok(Outcome { truth, captures: if truth { captures } else { Vec::new() } })
            }
        }
    }

    /// `field` =~ `pattern`, with the captures if the expression has a group.
    fn matches(&self, c: &Condition, field: &Field, pattern: &Pattern) -> Result<Outcome, HuntError> {
        let data = match field {
            Field::Variable(name) => self.vars.get(name).unwrap_or("").to_string(),
            Field::Template(t) => expand_with(t, &*self.vars, &[]),
        };
        let expanded;
        let (source, re): (&str, &Regex) = match &pattern.compiled {
            Some(re) => (&pattern.source, re),
            None => {
                let src = expand_with(&pattern.source, &*self.vars, &[]);
                let re = compile(&src).map_err(|message| HuntError::BadExpression {
                    file: c.file.to_string(),
                    line: c.line,
                    message,
                })?;
                expanded = (src, re);
                (&expanded.0, &expanded.1)
            }
        };
        let Some(caps) = re.captures(data.as_bytes()) else {
            return Ok(Outcome { truth: false, captures: Vec::new() });
        };
        let captures = if source.contains('(') {
            caps.iter().map(|m| m.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())).collect()
        } else {
            Vec::new()
        };
        Ok(Outcome { truth: true, captures })
    }

    /// Runs an inline action now, or queues it for CS_EXECUTE.
    fn queue(&mut self, a: &Action, captures: &[Option<String>]) {
        for _ in 0..a.repeat {
            if a.inline {
                let data = expand_with(&a.data, &*self.vars, captures);
                if a.app == "log" {
                    log(&data);
                }
                for (name, value) in effects(&a.app, &data, &*self.vars) {
                    match value {
                        Some(v) => self.vars.set(&name, v),
                        None => self.vars.unset(&name),
                    }
                }
            } else {
                let overlay = Overlay { vars: &*self.vars, pending: &self.pending };
                let data = expand_with(&a.data, &overlay, captures);
                let changes = effects(&a.app, &data, &overlay);
                self.pending.extend(changes);
                self.apps.push(AppCall { app: a.app.clone(), data });
            }
        }
    }
}

/// The variable changes `set`, `unset` and `export` make with `data`, by FreeSWITCH's
/// rules: `name=value` sets, `name=` and `name` unset; `export` also appends the name
/// as written (a `nolocal:` prefix included, which the bridge strips when it copies
/// the variable to the other leg) to `export_vars` when it has a value.
fn effects(app: &str, data: &str, vars: &dyn Lookup) -> Vec<(String, Option<String>)> {
    let (name, value) = match data.split_once('=') {
        Some((n, v)) => (n.trim(), (!v.is_empty()).then(|| v.to_string())),
        None => (data.trim(), None),
    };
    if name.is_empty() {
        return Vec::new();
    }
    match app {
        "set" => vec![(name.to_string(), value)],
        "unset" => vec![(data.trim().to_string(), None)],
        "export" => {
            let exports = match (&value, vars.lookup(EXPORT_VARS)) {
                (None, _) => None,
                (Some(_), Some(list)) if !list.is_empty() => Some(format!("{list},{name}")),
                (Some(_), _) => Some(name.to_string()),
            };
            let mut out = vec![(name.to_string(), value)];
            out.extend(exports.map(|e| (EXPORT_VARS.to_string(), Some(e))));
            out
        }
        _ => Vec::new(),
    }
}

/// Runs `set`, `unset` or `export` with `data` on `vars` (at CS_EXECUTE, by the same
/// rules as inline); false, changing nothing, for any other application.
pub(crate) fn apply_variable_app(app: &str, data: &str, vars: &mut Variables) -> bool {
    if !matches!(app, "set" | "unset" | "export") {
        return false;
    }
    for (name, value) in effects(app, data, &*vars) {
        match value {
            Some(v) => vars.set(&name, v),
            None => vars.unset(&name),
        }
    }
    true
}

/// The `log` application: `[LEVEL ]message`, at FreeSWITCH's level names.
pub(crate) fn log(data: &str) {
    let (level, message) = data.split_once(' ').unwrap_or((data, ""));
    match level.to_ascii_uppercase().as_str() {
        "CONSOLE" | "INFO" | "NOTICE" => tracing::info!(target: "dialplan", "{message}"),
        "WARNING" => tracing::warn!(target: "dialplan", "{message}"),
        "ERR" | "ERROR" | "CRIT" | "ALERT" => tracing::error!(target: "dialplan", "{message}"),
        "DEBUG" => tracing::debug!(target: "dialplan", "{message}"),
        _ => tracing::debug!(target: "dialplan", "{data}"),
    }
}
