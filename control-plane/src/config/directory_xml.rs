//! Users from a FreeSWITCH XML directory (`directory/default/1000.xml` and friends), so
//! operators bring the directory they have: every `<user id="…">` anywhere in the
//! document, its `password` or `a1-hash` param, and its variables, with
//! `effective_caller_id_name` / `effective_caller_id_number` as the caller ID. The
//! `<params>` and `<variables>` of an enclosing `<domain>` or `<group>` apply to each of
//! its users, as in FreeSWITCH; a user's own override them.
//! X-PRE-PROCESS `include` and `set` work as in dialplans; `$${default_password}` and
//! `$${domain}` are predefined.

use std::path::Path;
use std::sync::Arc;

use super::{ConfigError, Secret, User};
use crate::dialplan::xml::{read_document, Element, Source};
use crate::dialplan::Variables;

/// Reads the users of a directory file.
pub fn read(path: &Path, default_password: &str, domain: &str) -> Result<Vec<User>, ConfigError> {
    let name = path.display().to_string();
    let to_config = |file: String, line: usize, message: String| ConfigError {
        file,
        line,
        key: "directory.users_file".into(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| to_config(name.clone(), 0, format!("cannot read: {e}")))?;
    let mut globals = Variables::new();
    globals.set("default_password", default_password);
    globals.set("domain", domain);
    globals.set("domain_name", domain);
    let src = Source { text: &text, file: Arc::from(name.as_str()), dir: path.parent() };
    let root = read_document(&src, &mut globals, 0).map_err(|e| to_config(e.file, e.line, e.message))?;
    let mut users = Vec::new();
    collect(&root, &Settings::default(), &mut users).map_err(|(file, line, message)| to_config(file, line, message))?;
    Ok(users)
}

/// The `<params>` and `<variables>` in force at an element: its enclosing domains' and
/// groups', the innermost last (it wins).
#[derive(Default, Clone)]
struct Settings {
    params: Vec<(String, String)>,
    variables: Vec<(String, String)>,
}

impl Settings {
    /// These settings with `e`'s own `<params>` and `<variables>` added after them.
    fn with(&self, e: &Element) -> Settings {
        let mut s = self.clone();
        for section in &e.children {
            for item in &section.children {
                let (Some(name), Some(value)) = (item.attr("name"), item.attr("value")) else { continue };
                let pair = (name.to_string(), value.to_string());
                match (section.name.as_str(), item.name.as_str()) {
                    ("params", "param") => s.params.push(pair),
                    ("variables", "variable") => s.variables.push(pair),
                    _ => {}
                }
            }
        }
        s
    }
}

fn collect(e: &Element, inherited: &Settings, users: &mut Vec<User>) -> Result<(), (String, usize, String)> {
    if e.name != "user" {
        let here = if matches!(e.name.as_str(), "domain" | "group") { inherited.with(e) } else { inherited.clone() };
        for c in &e.children {
            collect(c, &here, users)?;
        }
        return Ok(());
    }
    let at = |message: String| (e.file.to_string(), e.line, message);
    let id = e.attr("id").filter(|i| !i.is_empty()).ok_or_else(|| at("<user> without an id".into()))?;
    let mut password = None;
    let mut ha1 = None;
    let mut user = User::new(id.to_string(), Secret::Password(String::new()));
    let settings = inherited.with(e);
    for (name, value) in &settings.params {
        match name.as_str() {
            "password" => password = Some(value.clone()),
            "a1-hash" => ha1 = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    for (name, value) in &settings.variables {
        match name.as_str() {
            "effective_caller_id_name" => user.caller_id_name = value.clone(),
            "effective_caller_id_number" => user.caller_id_number = value.clone(),
            _ => {}
        }
        user.variables.insert(name.clone(), value.clone());
    }
    user.secret = match (password, ha1) {
        (_, Some(h)) if h.len() == 32 && h.bytes().all(|c| c.is_ascii_hexdigit()) => {
            Secret::Ha1 { md5: Some(h), sha256: None }
        }
        (_, Some(_)) => return Err(at(format!("user {id}: a1-hash must be 32 hex digits"))),
        (Some(p), None) if !p.is_empty() => Secret::Password(p),
        _ => return Err(at(format!("user {id}: needs a password or a1-hash param"))),
    };
    users.push(user);
    Ok(())
}
