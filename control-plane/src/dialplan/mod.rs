//! FreeSWITCH's XML dialplan (mod_dialplan_xml), as a sans-IO engine.
//!
//! Users bring their FreeSWITCH dialplans, so the syntax and the hunting rules are
//! FreeSWITCH's. Data flows in two phases, as in FreeSWITCH's channel state machine:
//!
//! 1. **Load** ([`Dialplan::load`], [`Dialplan::parse`]): [`xml`] reads the text into
//!    an element tree with file and line, running `X-PRE-PROCESS` (`include`, `set`)
//!    and replacing `$${global}`; `ast` validates the tree strictly (unknown elements
//!    or attributes are errors with file:line) and compiles the regular expressions.
//! 2. **CS_ROUTING** ([`Dialplan::hunt`]): `engine` walks one context's extensions
//!    against the channel's [`Variables`]; inline actions (`set`, `unset`, `export`,
//!    `log`) change the variables at once, every other action is returned as an
//!    [`AppCall`] with its data expanded, for CS_EXECUTE to run in order. A `bridge`
//!    application's data is a [`DialString`].
//!
//! Nothing here does IO except [`Dialplan::load`] reading the files it is given.
//!
//! # Where this differs from FreeSWITCH
//!
//! - Action data is expanded at hunt time, not when the application runs. Variables
//!   set by queued `set`/`unset`/`export` are seen by the data of later queued
//!   applications (as they would be in CS_EXECUTE), but variables that other
//!   applications set while running (e.g. `originate_disposition` after `bridge`)
//!   expand to empty.
//! - `$N` and `${var}` are expanded in one pass: captured text and variable values are
//!   inserted literally, never expanded again. `${api args}` API calls and
//!   `${var:offset:length}` are not supported (they expand as unknown variables).
//! - Regular expressions use the `regex` crate in ASCII, byte-wise mode: no
//!   backreferences or look-around (rejected at load with file:line).
//! - In `regex="all|any|xor"` conditions, `$N` come from the last `<regex>` that
//!   matched, and the condition's truth decides whether the extension matched.
//!   `DP_MATCH` and `DP_REGEX_MATCH_N` are not set.
//! - Strict loading: unknown elements and attributes, time-of-day conditions, inline
//!   applications other than set/unset/export/log, undefined `$${global}`s and
//!   X-PRE-PROCESS commands other than `set`/`include` are errors, not log lines.
//! - `include` paths are relative to the including file, not to the conf directory.

mod ast;
mod dialstring;
mod engine;
mod vars;
pub(crate) mod xml;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

pub use dialstring::{DialString, DialStringError, Endpoint, Leg};
pub(crate) use engine::{apply_variable_app, log as log_app};
pub use vars::{expand, Variables};

/// The default dialplan, compiled in.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/dialplan/default.xml");
/// How the embedded default is named in messages.
pub const EMBEDDED_NAME: &str = "<embedded default config/dialplan/default.xml>";

/// A dialplan that cannot be loaded: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DialplanError {
    /// The file (or the name given to [`Dialplan::parse`]).
    pub file: String,
    /// 1-based line of the offending element (0 when the file could not be read).
    pub line: usize,
    /// What is wrong and what is expected.
    pub message: String,
}

/// A hunt that cannot be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HuntError {
    /// Neither the channel's context nor a `global` context exists.
    #[error("context \"{context}\" is not in the dialplan (nor is \"global\")")]
    UnknownContext {
        /// The context asked for.
        context: String,
    },
    /// An expression containing `${...}` expanded, at hunt time, to an invalid regex.
    #[error("{file}:{line}: {message}")]
    BadExpression {
        /// The file of the condition.
        file: String,
        /// Its line.
        line: usize,
        /// The expanded expression and what is wrong with it.
        message: String,
    },
}

/// One application to run in CS_EXECUTE, with its data already expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCall {
    /// The application's name, e.g. `bridge`.
    pub app: String,
    /// Its argument, e.g. `user/1001`.
    pub data: String,
}

impl AppCall {
    /// An application call (handy in tests and for building lists by hand).
    pub fn new(app: impl Into<String>, data: impl Into<String>) -> AppCall {
        AppCall { app: app.into(), data: data.into() }
    }
}

/// A loaded, validated dialplan.
#[derive(Debug, Clone)]
pub struct Dialplan {
    doc: ast::Document,
    globals: Variables,
}

impl Dialplan {
    /// Parses one XML document. `file` names it in errors; `globals` are the
    /// `$${name}` values. `X-PRE-PROCESS include` needs files: use [`Dialplan::load`].
    pub fn parse(xml: &str, file: &str, globals: &Variables) -> Result<Dialplan, DialplanError> {
        let src = xml::Source { text: xml, file: Arc::from(file), dir: None };
        Dialplan::from_source(&src, globals)
    }

    /// Reads a file, following `<X-PRE-PROCESS cmd="include" data="glob"/>` (relative
    /// to the including file) and `cmd="set" data="name=value"` (defines a global).
    pub fn load(path: &Path, globals: &Variables) -> Result<Dialplan, DialplanError> {
        let text = std::fs::read_to_string(path).map_err(|e| DialplanError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        let src = xml::Source {
            text: &text,
            file: Arc::from(path.display().to_string()),
            dir: Some(path.parent().unwrap_or(Path::new("."))),
        };
        Dialplan::from_source(&src, globals)
    }

    /// The default dialplan compiled in (`config/dialplan/default.xml`): in context
    /// `default`, 1000–1019 call each other, 9196 answers and echoes.
    pub fn embedded_default() -> Dialplan {
        Dialplan::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME, &Variables::new())
            .expect("the embedded default dialplan is valid (tested by embedded_default_*)")
    }

    fn from_source(src: &xml::Source, globals: &Variables) -> Result<Dialplan, DialplanError> {
        let mut globals = globals.clone();
        let root = xml::read_document(src, &mut globals, 0)?;
        let doc = ast::build(&root)?;
        Ok(Dialplan { doc, globals })
    }

    /// The globals after loading: those passed in plus every `X-PRE-PROCESS set`.
    pub fn globals(&self) -> &Variables {
        &self.globals
    }

    /// The context names, in document order.
    pub fn contexts(&self) -> impl Iterator<Item = &str> {
        self.doc.contexts.iter().map(|c| c.name.as_str())
    }

    /// CS_ROUTING: hunts `context` for a channel whose variables are `vars`
    /// (destination_number, caller_id_number, caller_id_name, network_addr, context,
    /// ... are plain variables here). Inline actions (`inline="true"`: set, unset,
    /// export, log are the ones that may run inline) are applied to `vars` during the
    /// hunt; everything else is returned in order for CS_EXECUTE. An unknown context
    /// (with no `global` context to fall back to) is an error; no matching extension
    /// returns an empty Vec.
    pub fn hunt(&self, context: &str, vars: &mut Variables) -> Result<Vec<AppCall>, HuntError> {
        engine::hunt(&self.doc, context, vars)
    }
}
