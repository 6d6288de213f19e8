use super::*;

#[test]
fn embedded_default_parses() {
    let _ = Dialplan::embedded_default();
}
