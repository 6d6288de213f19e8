//! Users from a FreeSWITCH XML directory (`directory/default/1000.xml` and friends), so
//! operators bring the directory they have: every `<user id="…">` anywhere in the
//! document, its `password` or `a1-hash` param, and its variables, with
//! `effective_caller_id_name` / `effective_caller_id_number` as the caller ID.
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
    collect(&root, &mut users).map_err(|(file, line, message)| to_config(file, line, message))?;
    Ok(users)
}

fn collect(e: &Element, users: &mut Vec<User>) -> Result<(), (String, usize, String)> {
    if e.name != "user" {
        for c in &e.children {
            collect(c, users)?;
        }
        return Ok(());
    }
    let at = |message: String| (e.file.to_string(), e.line, message);
    let id = e.attr("id").filter(|i| !i.is_empty()).ok_or_else(|| at("<user> without an id".into()))?;
    let mut password = None;
    let mut ha1 = None;
    let mut user = User::new(id.to_string(), Secret::Password(String::new()));
    for section in &e.children {
        for item in &section.children {
            let (Some(name), Some(value)) = (item.attr("name"), item.attr("value")) else { continue };
            match (section.name.as_str(), item.name.as_str()) {
                ("params", "param") => match name {
                    "password" => password = Some(value.to_string()),
                    "a1-hash" => ha1 = Some(value.to_ascii_lowercase()),
                    _ => {}
                },
                ("variables", "variable") => {
                    match name {
                        "effective_caller_id_name" => user.caller_id_name = value.to_string(),
                        "effective_caller_id_number" => user.caller_id_number = value.to_string(),
                        _ => {}
                    }
                    user.variables.insert(name.to_string(), value.to_string());
                }
                _ => {}
            }
        }
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
