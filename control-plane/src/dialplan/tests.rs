//! Tests named after the behaviour and the FreeSWITCH documentation page they check
//! ("XML Dialplan", "Regular Expression", "Dialplan Recipes", "bridge").

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Variables {
    pairs.iter().copied().collect()
}

fn apps(list: &[(&str, &str)]) -> Vec<AppCall> {
    list.iter().map(|(a, d)| AppCall::new(*a, *d)).collect()
}

/// A dialplan whose `default` context holds `body`.
fn dp(body: &str) -> Dialplan {
    let xml = format!("<include>\n<context name=\"default\">\n{body}\n</context>\n</include>\n");
    Dialplan::parse(&xml, "test.xml", &Variables::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// Hunts `default` with `destination_number` = `dest`.
fn hunt(plan: &Dialplan, dest: &str) -> Vec<AppCall> {
    let mut v = vars(&[("destination_number", dest)]);
    plan.hunt("default", &mut v).unwrap()
}

fn err(xml: &str) -> DialplanError {
    Dialplan::parse(xml, "bad.xml", &Variables::new()).unwrap_err()
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ferroswitch-dialplan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- the embedded default ----

#[test]
fn embedded_default_1001_exports_sets_and_bridges_user_1001() {
    let mut v = vars(&[("destination_number", "1001"), ("caller_id_number", "1000")]);
    let got = Dialplan::embedded_default().hunt("default", &mut v).unwrap();
    assert_eq!(
        got,
        apps(&[
            ("export", "dialed_extension=1001"),
            ("set", "call_timeout=30"),
            ("set", "hangup_after_bridge=true"),
            ("set", "continue_on_fail=true"),
            ("bridge", "user/1001"),
        ])
    );
    let ds = DialString::parse(&got[4].data).unwrap();
    assert_eq!(ds.groups()[0][0].endpoint(), &Endpoint::User { id: "1001".into(), domain: None });
    // Nothing ran inline: the channel's variables are untouched.
    assert_eq!(v, vars(&[("destination_number", "1001"), ("caller_id_number", "1000")]));
}

#[test]
fn embedded_default_covers_1000_to_1019_only() {
    let plan = Dialplan::embedded_default();
    assert_eq!(hunt(&plan, "1000")[4], AppCall::new("bridge", "user/1000"));
    assert_eq!(hunt(&plan, "1019")[4], AppCall::new("bridge", "user/1019"));
    assert_eq!(hunt(&plan, "1020"), vec![]);
    assert_eq!(hunt(&plan, "999"), vec![]);
    assert_eq!(hunt(&plan, "10010"), vec![]);
}

#[test]
fn embedded_default_9196_answers_and_echoes() {
    assert_eq!(hunt(&Dialplan::embedded_default(), "9196"), apps(&[("answer", ""), ("echo", "")]));
}

#[test]
fn embedded_default_5555_matches_no_extension() {
    assert_eq!(hunt(&Dialplan::embedded_default(), "5555"), vec![]);
}

#[test]
fn embedded_default_has_one_context_named_default() {
    let plan = Dialplan::embedded_default();
    assert_eq!(plan.contexts().collect::<Vec<_>>(), vec!["default"]);
}

// ---- conditions, captures, break ----

#[test]
fn captures_fill_dollar_n_from_the_conditions_own_match_xml_dialplan_regex() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^(\d{3})(\d{4})$">
    <action application="log" data="$2-$1 [$0] [$3] $9"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "5551234"), apps(&[("log", "1234-555 [5551234] [] ")]));
}

#[test]
fn unmatched_optional_group_expands_to_empty() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^(\+)?(\d+)$">
    <action application="log" data="[$1][$2]"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "42"), apps(&[("log", "[][42]")]));
    assert_eq!(hunt(&plan, "+42"), apps(&[("log", "[+][42]")]));
}

#[test]
fn expression_without_a_group_leaves_dollar_n_as_written() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^1234$">
    <action application="log" data="cost $1"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1234"), apps(&[("log", "cost $1")]));
}

#[test]
fn captures_belong_to_their_condition_only() {
    let plan = dp(r#"<extension name="x">
  <condition field="caller_id_number" expression="^(\d+)$">
    <action application="log" data="caller $1"/>
  </condition>
  <condition field="destination_number" expression="^(9)(\d+)$">
    <action application="log" data="dest $2"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "9123"), ("caller_id_number", "1000")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "caller 1000"), ("log", "dest 123")]));
}

#[test]
fn condition_without_field_is_always_true_xml_dialplan_conditions() {
    let plan = dp(r#"<extension name="x">
  <condition>
    <action application="answer"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "anything"), apps(&[("answer", "")]));
}

#[test]
fn field_without_expression_matches_anything_including_a_missing_variable() {
    let plan = dp(r#"<extension name="x">
  <condition field="no_such_variable">
    <action application="answer"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("answer", "")]));
}

#[test]
fn missing_field_variable_is_matched_as_empty() {
    let plan = dp(r#"<extension name="x">
  <condition field="sip_user_agent" expression="^$">
    <action application="log" data="no agent"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "no agent")]));
}

#[test]
fn field_with_dollar_is_expanded_before_matching() {
    let plan = dp(r#"<extension name="x">
  <condition field="${caller_id_number}-${destination_number}" expression="^1000-(\d+)$">
    <action application="log" data="$1"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "42"), ("caller_id_number", "1000")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "42")]));
}

#[test]
fn expression_with_variable_is_expanded_at_hunt_time() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^${prefix}(\d+)$">
    <action application="log" data="$1"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "0044123"), ("prefix", "00")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "44123")]));
}

#[test]
fn expression_expanding_to_a_bad_regex_is_a_hunt_error_with_line() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="${pattern}">
    <action application="log" data="x"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "1"), ("pattern", "(")]);
    match plan.hunt("default", &mut v).unwrap_err() {
        HuntError::BadExpression { file, line, message } => {
            assert_eq!((file.as_str(), line), ("test.xml", 4));
            assert!(message.starts_with("bad regular expression \"(\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Two conditions: the first with an anti-action, the second always true.
fn two_conditions(first_expr: &str, brk: &str) -> Dialplan {
    dp(&format!(
        r#"<extension name="x">
  <condition field="destination_number" expression="{first_expr}" break="{brk}">
    <action application="log" data="first true"/>
    <anti-action application="log" data="first false"/>
  </condition>
  <condition>
    <action application="log" data="second"/>
  </condition>
</extension>"#
    ))
}

#[test]
fn break_on_false_is_the_default_and_stops_at_a_false_condition_xml_dialplan_break() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^1$">
    <anti-action application="log" data="first false"/>
  </condition>
  <condition>
    <action application="log" data="second"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "first false")]));
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "second")]));
    let explicit = two_conditions("^1$", "on-false");
    assert_eq!(hunt(&explicit, "2"), apps(&[("log", "first false")]));
    assert_eq!(hunt(&explicit, "1"), apps(&[("log", "first true"), ("log", "second")]));
}

#[test]
fn break_on_true_stops_at_a_true_condition_and_goes_on_after_a_false_one() {
    let plan = two_conditions("^1$", "on-true");
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "first true")]));
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "first false"), ("log", "second")]));
}

#[test]
fn break_always_stops_after_the_condition_either_way() {
    let plan = two_conditions("^1$", "always");
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "first true")]));
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "first false")]));
}

#[test]
fn break_never_goes_on_after_the_condition_either_way() {
    let plan = two_conditions("^1$", "never");
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "first true"), ("log", "second")]));
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "first false"), ("log", "second")]));
}

#[test]
fn break_values_compare_case_insensitively() {
    let plan = two_conditions("^1$", "ON-TRUE");
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "first true")]));
}

#[test]
fn anti_actions_run_when_false_and_count_as_a_match_xml_dialplan_anti_action() {
    let plan = dp(r#"<extension name="a">
  <condition field="destination_number" expression="^4321$">
    <action application="answer"/>
    <anti-action application="log" data="not 4321"/>
  </condition>
</extension>
<extension name="b">
  <condition>
    <action application="log" data="b"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "5555"), apps(&[("log", "not 4321")]));
    assert_eq!(hunt(&plan, "4321"), apps(&[("answer", "")]));
}

#[test]
fn anti_actions_get_no_capture_substitution() {
    let plan = dp(r#"<extension name="a">
  <condition field="destination_number" expression="^(1)$">
    <anti-action application="log" data="no $1"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "no $1")]));
}

#[test]
fn false_condition_without_anti_actions_moves_on_to_the_next_extension() {
    let plan = dp(r#"<extension name="a">
  <condition field="destination_number" expression="^1$">
    <action application="log" data="a"/>
  </condition>
</extension>
<extension name="b">
  <condition field="destination_number" expression="^2$">
    <action application="log" data="b"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "b")]));
}

#[test]
fn actions_of_a_true_condition_stay_queued_when_a_later_one_fails_as_in_freeswitch() {
    let plan = dp(r#"<extension name="a">
  <condition>
    <action application="log" data="a1"/>
  </condition>
  <condition field="destination_number" expression="^1$">
    <action application="log" data="a2"/>
  </condition>
</extension>
<extension name="b">
  <condition>
    <action application="log" data="b"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "2"), apps(&[("log", "a1"), ("log", "b")]));
}

#[test]
fn hunting_stops_at_the_first_matching_extension() {
    let plan = dp(r#"<extension name="a">
  <condition field="destination_number" expression="^\d+$">
    <action application="log" data="a"/>
  </condition>
</extension>
<extension name="b">
  <condition field="destination_number" expression="^\d+$">
    <action application="log" data="b"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "a")]));
}

#[test]
fn continue_true_collects_the_next_matching_extension_too_xml_dialplan_continue() {
    let plan = dp(r#"<extension name="a" continue="true">
  <condition field="destination_number" expression="^\d+$">
    <action application="log" data="a"/>
  </condition>
</extension>
<extension name="b">
  <condition field="destination_number" expression="^(\d+)$">
    <action application="bridge" data="user/$1"/>
  </condition>
</extension>
<extension name="c">
  <condition>
    <action application="log" data="c"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1001"), apps(&[("log", "a"), ("bridge", "user/1001")]));
}

#[test]
fn continue_false_is_the_same_as_no_continue() {
    let plan = dp(r#"<extension name="a" continue="false">
  <condition><action application="log" data="a"/></condition>
</extension>
<extension name="b">
  <condition><action application="log" data="b"/></condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "a")]));
}

// ---- nested conditions ----

const NESTED: &str = r#"<extension name="a">
  <condition field="destination_number" expression="^(1\d\d)$">
    <action application="log" data="outer $1"/>
    <condition field="caller_id_number" expression="^(2\d\d)$">
      <action application="log" data="inner $1"/>
    </condition>
    <condition>
      <action application="log" data="inner absolute"/>
    </condition>
  </condition>
</extension>
<extension name="b">
  <condition><action application="log" data="b"/></condition>
</extension>"#;

#[test]
fn nested_conditions_run_after_their_parents_actions_xml_dialplan_nested_conditions() {
    let plan = dp(NESTED);
    let mut v = vars(&[("destination_number", "100"), ("caller_id_number", "200")]);
    assert_eq!(
        plan.hunt("default", &mut v).unwrap(),
        apps(&[("log", "outer 100"), ("log", "inner 200"), ("log", "inner absolute")])
    );
}

#[test]
fn failing_nested_condition_fails_the_extension_and_hunting_goes_on() {
    let plan = dp(NESTED);
    let mut v = vars(&[("destination_number", "100"), ("caller_id_number", "999")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "outer 100"), ("log", "b")]));
}

#[test]
fn false_parent_skips_its_nested_conditions() {
    let plan = dp(NESTED);
    let mut v = vars(&[("destination_number", "900"), ("caller_id_number", "200")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "b")]));
}

#[test]
fn require_nested_false_lets_the_extension_match_when_nested_fail() {
    let plan = dp(r#"<extension name="a">
  <condition field="destination_number" expression="^1$" require-nested="false">
    <action application="log" data="outer"/>
    <condition field="caller_id_number" expression="^nobody$">
      <action application="log" data="inner"/>
    </condition>
  </condition>
</extension>
<extension name="b">
  <condition><action application="log" data="b"/></condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "outer")]));
}

#[test]
fn break_on_true_skips_nested_conditions_as_in_freeswitch() {
    let plan = dp(r#"<extension name="a">
  <condition field="destination_number" expression="^1$" break="on-true">
    <action application="log" data="outer"/>
    <condition><action application="log" data="inner"/></condition>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "outer")]));
}

// ---- regex="all|any|xor" ----

fn regex_plan(mode: &str) -> Dialplan {
    dp(&format!(
        r#"<extension name="x">
  <condition regex="{mode}">
    <regex field="destination_number" expression="^(1\d+)$"/>
    <regex field="caller_id_number" expression="^(2\d+)$"/>
    <action application="log" data="yes $1"/>
    <anti-action application="log" data="no"/>
  </condition>
</extension>"#
    ))
}

fn regex_hunt(plan: &Dialplan, dest: &str, caller: &str) -> Vec<AppCall> {
    let mut v = vars(&[("destination_number", dest), ("caller_id_number", caller)]);
    plan.hunt("default", &mut v).unwrap()
}

#[test]
fn regex_all_needs_every_regex_to_match_xml_dialplan_multiple_regex() {
    let plan = regex_plan("all");
    assert_eq!(regex_hunt(&plan, "10", "20"), apps(&[("log", "yes 20")]));
    assert_eq!(regex_hunt(&plan, "10", "99"), apps(&[("log", "no")]));
    assert_eq!(regex_hunt(&plan, "99", "20"), apps(&[("log", "no")]));
}

#[test]
fn regex_any_needs_one_regex_to_match() {
    let plan = regex_plan("any");
    assert_eq!(regex_hunt(&plan, "10", "20"), apps(&[("log", "yes 10")]));
    assert_eq!(regex_hunt(&plan, "99", "20"), apps(&[("log", "yes 20")]));
    assert_eq!(regex_hunt(&plan, "99", "99"), apps(&[("log", "no")]));
}

#[test]
fn regex_xor_needs_exactly_one_regex_to_match() {
    let plan = regex_plan("xor");
    assert_eq!(regex_hunt(&plan, "10", "20"), apps(&[("log", "no")]));
    assert_eq!(regex_hunt(&plan, "10", "99"), apps(&[("log", "yes 10")]));
    assert_eq!(regex_hunt(&plan, "99", "20"), apps(&[("log", "yes 20")]));
    assert_eq!(regex_hunt(&plan, "99", "99"), apps(&[("log", "no")]));
}

// ---- inline actions and expansion ----

#[test]
fn inline_set_is_seen_by_later_condition_fields_and_data_xml_dialplan_inline() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^(\d+)$">
    <action application="set" data="target=$1" inline="true"/>
    <action application="log" data="INFO calling ${target}"/>
  </condition>
  <condition field="${target}" expression="^1001$">
    <action application="bridge" data="user/${target}"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "1001")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "INFO calling 1001"), ("bridge", "user/1001")]));
    assert_eq!(v.get("target"), Some("1001"));
}

#[test]
fn queued_set_is_seen_by_later_data_but_not_by_conditions() {
    let plan = dp(r#"<extension name="x">
  <condition>
    <action application="set" data="mode=queued"/>
    <action application="log" data="mode ${mode}"/>
  </condition>
  <condition field="mode" expression="^queued$">
    <action application="log" data="seen"/>
    <anti-action application="log" data="not seen by the condition"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "1")]);
    assert_eq!(
        plan.hunt("default", &mut v).unwrap(),
        apps(&[("set", "mode=queued"), ("log", "mode queued"), ("log", "not seen by the condition")])
    );
    assert_eq!(v.get("mode"), None);
}

#[test]
fn inline_unset_export_and_log_change_the_variables_during_the_hunt() {
    let plan = dp(r#"<extension name="x">
  <condition>
    <action application="unset" data="gone" inline="true"/>
    <action application="export" data="a=1" inline="true"/>
    <action application="export" data="nolocal:b=2" inline="true"/>
    <action application="set" data="emptied=" inline="true"/>
    <action application="log" data="DEBUG hunting" inline="true"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "1"), ("gone", "x"), ("emptied", "y")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), vec![]);
    assert_eq!(v, vars(&[("destination_number", "1"), ("a", "1"), ("nolocal:b", "2"), ("export_vars", "a,nolocal:b")]));
}

#[test]
fn inline_actions_run_in_order_with_queued_ones() {
    let plan = dp(r#"<extension name="x">
  <condition>
    <action application="set" data="x=queued"/>
    <action application="set" data="y=${x}" inline="true"/>
    <action application="log" data="${x} ${y}"/>
  </condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "1")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("set", "x=queued"), ("log", "queued ")]));
    assert_eq!(v.get("y"), None);
}

#[test]
fn loop_attribute_queues_an_action_several_times() {
    let plan = dp(r#"<extension name="x">
  <condition><action application="playback" data="beep.wav" loop="3"/></condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("playback", "beep.wav"), ("playback", "beep.wav"), ("playback", "beep.wav")]));
}

#[test]
fn expand_replaces_variables_and_missing_ones_with_empty() {
    let v = vars(&[("domain", "example.com"), ("user", "1001")]);
    assert_eq!(expand("user/${user}@${domain}${nope}!", &v, &[]), "user/1001@example.com!");
}

#[test]
fn expand_names_compare_case_insensitively() {
    let v = vars(&[("Caller_ID_Number", "1000")]);
    assert_eq!(expand("${caller_id_number}", &v, &[]), "1000");
}

#[test]
fn expand_nested_and_unclosed_and_plain_dollar() {
    let v = vars(&[("which", "a"), ("a", "A")]);
    assert_eq!(expand("${${which}}", &v, &[]), "A");
    assert_eq!(expand("cost $5 and ${open", &v, &[]), "cost $5 and ${open");
    assert_eq!(expand("$", &v, &[]), "$");
    assert_eq!(expand("$$", &v, &[]), "$$");
}

#[test]
fn expand_captures_and_never_reexpands_inserted_text() {
    let v = vars(&[("secret", "s3cret")]);
    let caps = [Some("${secret}".to_string()), Some("${secret}".to_string())];
    assert_eq!(expand("$1/${secret}", &v, &caps), "${secret}/s3cret");
    assert_eq!(expand("[$2][$10]", &v, &caps), "[][]");
}

#[test]
fn globals_are_expanded_at_load_time_xml_dialplan_preprocessor() {
    let globals = vars(&[("domain", "example.com")]);
    let plan = Dialplan::parse(
        r#"<include><context name="default">
  <extension name="x">
    <condition field="destination_number" expression="^(\d+)$">
      <action application="bridge" data="user/$1@$${domain}"/>
    </condition>
  </extension>
</context></include>"#,
        "g.xml",
        &globals,
    )
    .unwrap();
    assert_eq!(hunt(&plan, "1001"), apps(&[("bridge", "user/1001@example.com")]));
}

#[test]
fn preprocess_set_defines_a_global_for_the_rest_of_the_document() {
    let plan = Dialplan::parse(
        r#"<include>
  <X-PRE-PROCESS cmd="set" data="ring=%(2000,4000,440,480)"/>
  <context name="default">
    <extension name="x">
      <condition><action application="set" data="ringback=$${ring}"/></condition>
    </extension>
  </context>
</include>"#,
        "s.xml",
        &Variables::new(),
    )
    .unwrap();
    assert_eq!(hunt(&plan, "1"), apps(&[("set", "ringback=%(2000,4000,440,480)")]));
    assert_eq!(plan.globals().get("ring"), Some("%(2000,4000,440,480)"));
}

#[test]
fn undefined_global_is_an_error_with_its_line() {
    let e = err("<include>\n<context name=\"default\">\n<extension>\n<condition>\n<action application=\"log\" data=\"$${nope}\"/>\n</condition></extension></context></include>");
    assert_eq!((e.file.as_str(), e.line), ("bad.xml", 5));
    assert!(e.message.starts_with("$${nope} is not defined"), "{}", e.message);
}

#[test]
fn include_and_set_across_two_files_xml_dialplan_preprocessor() {
    let dir = TempDir::new("include");
    let main = dir.write(
        "dialplan.xml",
        r#"<?xml version="1.0"?>
<document type="freeswitch/xml">
  <X-PRE-PROCESS cmd="set" data="domain=pbx.example"/>
  <section name="dialplan" description="test">
    <context name="default">
      <X-PRE-PROCESS cmd="include" data="default/*.xml"/>
      <extension name="last">
        <condition><action application="log" data="last"/></condition>
      </extension>
    </context>
  </section>
</document>
"#,
    );
    dir.write(
        "default/01_users.xml",
        r#"<include>
  <X-PRE-PROCESS cmd="set" data="timeout=25"/>
  <extension name="users">
    <condition field="destination_number" expression="^(10\d\d)$">
      <action application="set" data="call_timeout=$${timeout}"/>
      <action application="bridge" data="user/$1@$${domain}"/>
    </condition>
  </extension>
</include>
"#,
    );
    dir.write(
        "default/02_echo.xml",
        r#"<include>
  <extension name="echo">
    <condition field="destination_number" expression="^9196$">
      <action application="echo"/>
    </condition>
  </extension>
</include>
"#,
    );
    dir.write("default/notes.txt", "not xml");
    let plan = Dialplan::load(&main, &Variables::new()).unwrap();
    assert_eq!(hunt(&plan, "1001"), apps(&[("set", "call_timeout=25"), ("bridge", "user/1001@pbx.example")]));
    assert_eq!(hunt(&plan, "9196"), apps(&[("echo", "")]));
    assert_eq!(hunt(&plan, "5"), apps(&[("log", "last")]));
    assert_eq!(plan.globals().get("timeout"), Some("25"));
}

#[test]
fn error_in_an_included_file_names_that_file_and_line() {
    let dir = TempDir::new("include-error");
    let main = dir.write(
        "main.xml",
        "<include>\n<context name=\"default\">\n<X-PRE-PROCESS cmd=\"include\" data=\"ext.xml\"/>\n</context>\n</include>\n",
    );
    let ext = dir.write(
        "ext.xml",
        "<include>\n<extension name=\"x\">\n<condition>\n<action data=\"x\"/>\n</condition>\n</extension>\n</include>\n",
    );
    let e = Dialplan::load(&main, &Variables::new()).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), (ext.display().to_string().as_str(), 4));
    assert_eq!(e.message, "<action> without application: expected application=\"name\"");
}

#[test]
fn including_a_missing_file_is_an_error_at_the_include_line() {
    let dir = TempDir::new("include-missing");
    let main = dir.write(
        "main.xml",
        "<include>\n<context name=\"default\">\n\n<X-PRE-PROCESS cmd=\"include\" data=\"nope.xml\"/>\n</context>\n</include>\n",
    );
    let e = Dialplan::load(&main, &Variables::new()).unwrap_err();
    assert_eq!((e.file, e.line), (main.display().to_string(), 4));
    assert!(e.message.contains("nope.xml does not exist"), "{}", e.message);
}

#[test]
fn a_file_including_itself_is_stopped() {
    let dir = TempDir::new("include-cycle");
    let main = dir.write(
        "main.xml",
        "<include>\n<context name=\"default\">\n<X-PRE-PROCESS cmd=\"include\" data=\"loop.xml\"/>\n</context>\n</include>\n",
    );
    dir.write("loop.xml", "<include>\n<X-PRE-PROCESS cmd=\"include\" data=\"loop.xml\"/>\n</include>\n");
    let e = Dialplan::load(&main, &Variables::new()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.starts_with("includes nest more than 32 deep"), "{}", e.message);
}

#[test]
fn include_without_a_file_is_refused_by_parse() {
    let e = err("<include>\n<context name=\"default\">\n<X-PRE-PROCESS cmd=\"include\" data=\"x.xml\"/>\n</context>\n</include>");
    assert_eq!(e.line, 3);
    assert_eq!(e.message, "X-PRE-PROCESS include needs a file on disk: use Dialplan::load");
}

#[test]
fn load_of_a_missing_file_reports_line_zero() {
    let e =
        Dialplan::load(std::path::Path::new("/nonexistent/ferroswitch/dialplan.xml"), &Variables::new()).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("/nonexistent/ferroswitch/dialplan.xml", 0));
}

// ---- contexts and layouts ----

#[test]
fn document_section_layout_is_accepted() {
    let plan = Dialplan::parse(
        r#"<document type="freeswitch/xml">
  <section name="dialplan">
    <context name="public">
      <extension name="x"><condition><action application="answer"/></condition></extension>
    </context>
  </section>
</document>"#,
        "doc.xml",
        &Variables::new(),
    )
    .unwrap();
    let mut v = vars(&[("destination_number", "1")]);
    assert_eq!(plan.hunt("public", &mut v).unwrap(), apps(&[("answer", "")]));
}

#[test]
fn unknown_context_is_an_error() {
    let plan = Dialplan::embedded_default();
    let mut v = vars(&[("destination_number", "1001")]);
    assert_eq!(plan.hunt("public", &mut v).unwrap_err(), HuntError::UnknownContext { context: "public".into() });
}

#[test]
fn unknown_context_falls_back_to_global_as_in_freeswitch() {
    let plan = Dialplan::parse(
        r#"<include><context name="global">
  <extension name="x"><condition><action application="log" data="global"/></condition></extension>
</context></include>"#,
        "g.xml",
        &Variables::new(),
    )
    .unwrap();
    let mut v = vars(&[("destination_number", "1")]);
    assert_eq!(plan.hunt("anything", &mut v).unwrap(), apps(&[("log", "global")]));
}

#[test]
fn expression_element_with_cdata_is_read_like_the_attribute() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number">
    <expression><![CDATA[^(<\d+>)$]]></expression>
    <action application="log" data="$1"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "<12>"), apps(&[("log", "<12>")]));
}

#[test]
fn action_text_is_used_as_data() {
    let plan = dp(r#"<extension name="x">
  <condition><action application="log">INFO a &amp; b</action></condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("log", "INFO a & b")]));
}

#[test]
fn asterisk_patterns_and_slash_flags_follow_switch_regex_perform() {
    let plan = dp(r#"<extension name="ast">
  <condition field="destination_number" expression="_1NXX">
    <action application="log" data="ast"/>
  </condition>
</extension>
<extension name="caseless">
  <condition field="destination_number" expression="/^sales$/i">
    <action application="log" data="sales"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1234"), apps(&[("log", "ast")]));
    assert_eq!(hunt(&plan, "1134"), vec![]);
    assert_eq!(hunt(&plan, "SALES"), apps(&[("log", "sales")]));
}

#[test]
fn digit_class_is_ascii_like_pcre() {
    let plan = dp(r#"<extension name="x">
  <condition field="destination_number" expression="^\d+$">
    <action application="log" data="digits"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "123"), apps(&[("log", "digits")]));
    assert_eq!(hunt(&plan, "١٢٣"), vec![]);
}

#[test]
fn auto_hunt_starts_at_the_extension_named_after_the_number() {
    let plan = dp(r#"<extension name="a">
  <condition><action application="log" data="a"/></condition>
</extension>
<extension name="1234">
  <condition><action application="log" data="1234"/></condition>
</extension>"#);
    let mut v = vars(&[("destination_number", "1234"), ("auto_hunt", "true")]);
    assert_eq!(plan.hunt("default", &mut v).unwrap(), apps(&[("log", "1234")]));
}

// ---- load errors with exact lines ----

#[test]
fn malformed_xml_reports_the_line_of_the_mismatched_end_tag() {
    let e = err("<include>\n  <context name=\"default\">\n    <extension name=\"x\">\n    </context>\n</include>\n");
    assert_eq!((e.file.as_str(), e.line), ("bad.xml", 4));
    assert!(e.message.starts_with("malformed XML"), "{}", e.message);
}

#[test]
fn malformed_xml_reports_an_unclosed_element_at_its_start() {
    let e = err("<include>\n  <context name=\"default\">\n    <extension name=\"x\">\n");
    assert_eq!(e.line, 3);
    assert_eq!(e.message, "malformed XML: <extension> is never closed (the file ends first)");
}

#[test]
fn malformed_attribute_reports_its_line() {
    let e = err("<include>\n<context name=\"default\">\n<extension name=x>\n</extension>\n</context>\n</include>");
    assert_eq!(e.line, 3);
    assert!(e.message.starts_with("malformed XML"), "{}", e.message);
}

#[test]
fn unknown_element_is_rejected_with_its_line() {
    let e = err("<include>\n<context name=\"default\">\n<extension name=\"x\">\n<condition>\n<acton application=\"answer\"/>\n</condition>\n</extension>\n</context>\n</include>");
    assert_eq!((e.file.as_str(), e.line), ("bad.xml", 5));
    assert_eq!(
        e.message,
        "unknown element <acton> inside <condition>: expected <action>, <anti-action>, <condition> or <expression>"
    );
}

#[test]
fn unknown_attribute_is_rejected_with_its_line() {
    let e = err("<include>\n<context name=\"default\">\n<extension name=\"x\" contine=\"true\">\n</extension>\n</context>\n</include>");
    assert_eq!(e.line, 3);
    assert_eq!(e.message, "unknown attribute \"contine\" on <extension>: expected name, continue");
}

#[test]
fn time_of_day_conditions_are_rejected_with_a_hint() {
    let e = err("<include>\n<context name=\"default\">\n<extension>\n<condition wday=\"2-6\"/>\n</extension>\n</context>\n</include>");
    assert_eq!(e.line, 4);
    assert!(e.message.ends_with("(time-of-day conditions are not supported yet)"), "{}", e.message);
}

#[test]
fn bad_regex_is_rejected_with_its_line() {
    let e = err("<include>\n<context name=\"default\">\n<extension>\n\n<condition field=\"destination_number\" expression=\"^(10\"/>\n</extension>\n</context>\n</include>");
    assert_eq!((e.file.as_str(), e.line), ("bad.xml", 5));
    assert!(e.message.starts_with("bad regular expression \"^(10\": "), "{}", e.message);
}

#[test]
fn missing_application_is_rejected_with_its_line() {
    let e = err("<include>\n<context name=\"default\">\n<extension>\n<condition>\n<action application=\"answer\"/>\n<anti-action data=\"x\"/>\n</condition>\n</extension>\n</context>\n</include>");
    assert_eq!(e.line, 6);
    assert_eq!(e.message, "<anti-action> without application: expected application=\"name\"");
}

#[test]
fn inline_is_refused_for_applications_that_cannot_run_while_routing() {
    let e = err("<include>\n<context name=\"default\">\n<extension>\n<condition>\n<action application=\"bridge\" data=\"user/1\" inline=\"true\"/>\n</condition>\n</extension>\n</context>\n</include>");
    assert_eq!(e.line, 5);
    assert_eq!(e.message, "application \"bridge\" cannot run inline: only set, unset, export, log may");
}

#[test]
fn bad_break_and_regex_modes_and_booleans_are_rejected() {
    let wrap = |cond: &str| {
        err(&format!(
            "<include>\n<context name=\"default\">\n<extension>\n{cond}\n</extension>\n</context>\n</include>"
        ))
    };
    let e = wrap("<condition break=\"sometimes\"/>");
    assert_eq!((e.line, e.message.as_str()), (4, "break=\"sometimes\": expected on-false, on-true, always or never"));
    let e = wrap("<condition regex=\"most\"><regex field=\"a\"/></condition>");
    assert_eq!((e.line, e.message.as_str()), (4, "regex=\"most\": expected all, any or xor"));
    let e = wrap("<condition require-nested=\"maybe\"/>");
    assert_eq!((e.line, e.message.as_str()), (4, "require-nested=\"maybe\" on <condition>: expected true or false"));
}

#[test]
fn duplicate_context_and_wrong_root_are_rejected() {
    let e = err("<include>\n<context name=\"a\"/>\n<context name=\"a\"/>\n</include>");
    assert_eq!((e.line, e.message.as_str()), (3, "context \"a\" is defined twice"));
    let e = err("\n<dialplan/>");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "unknown root element <dialplan>: expected <include> or <document type=\"freeswitch/xml\">")
    );
    let e = err("<!-- only a comment -->\n");
    assert_eq!(e.line, 2);
}

#[test]
fn conditions_nested_past_freeswitchs_recursion_limit_are_rejected() {
    let deep = |n: usize| {
        format!(
            "<include>\n<context name=\"default\">\n<extension>\n{}{}\n</extension>\n</context>\n</include>",
            "<condition>\n".repeat(n),
            "</condition>".repeat(n)
        )
    };
    assert!(Dialplan::parse(&deep(100), "deep.xml", &Variables::new()).is_ok());
    let e = err(&deep(101));
    assert_eq!((e.line, e.message.as_str()), (104, "conditions nest more than 100 deep"));
}

#[test]
fn regex_item_without_field_passes_and_expression_may_be_an_element() {
    let plan = dp(r#"<extension name="x">
  <condition regex="all">
    <regex/>
    <regex field="destination_number"><expression>^(\d)$</expression></regex>
    <action application="log" data="one digit $1"/>
  </condition>
</extension>"#);
    assert_eq!(hunt(&plan, "7"), apps(&[("log", "one digit 7")]));
    assert_eq!(hunt(&plan, "77"), vec![]);
}

#[test]
fn byte_order_mark_and_xml_declaration_are_accepted() {
    let plan = Dialplan::parse(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<include><context name=\"default\"/></include>",
        "bom.xml",
        &Variables::new(),
    )
    .unwrap();
    assert_eq!(plan.contexts().collect::<Vec<_>>(), vec!["default"]);
}

#[test]
fn empty_text_has_no_root_element() {
    let e = err("");
    assert_eq!(
        (e.line, e.message.as_str()),
        (1, "no root element: expected <include> or <document type=\"freeswitch/xml\">")
    );
}

#[test]
fn comments_are_allowed_anywhere() {
    let plan = dp(r#"<!-- before -->
<extension name="x"><!-- inside -->
  <condition><!-- here --><action application="answer"/><!-- too --></condition>
</extension>"#);
    assert_eq!(hunt(&plan, "1"), apps(&[("answer", "")]));
}

// ---- dial strings ----

fn user(id: &str) -> Endpoint {
    Endpoint::User { id: id.into(), domain: None }
}

fn endpoints(ds: &DialString) -> Vec<Vec<String>> {
    ds.groups().iter().map(|g| g.iter().map(|l| l.endpoint().to_string()).collect()).collect()
}

#[test]
fn dial_string_comma_rings_simultaneously_bridge() {
    let ds = DialString::parse("user/1000,user/1001").unwrap();
    assert_eq!(endpoints(&ds), vec![vec!["user/1000", "user/1001"]]);
    assert_eq!(ds.groups()[0][1].endpoint(), &user("1001"));
}

#[test]
fn dial_string_pipe_tries_in_sequence_bridge() {
    let ds = DialString::parse("user/1000|user/1001,user/1002|error/USER_BUSY").unwrap();
    assert_eq!(endpoints(&ds), vec![vec!["user/1000"], vec!["user/1001", "user/1002"], vec!["error/USER_BUSY"]]);
}

#[test]
fn dial_string_global_and_per_endpoint_variables_bridge_channel_variables() {
    let ds = DialString::parse(
        "{ignore_early_media=true,origination_caller_id_name='Sales, EU'}[leg_timeout=10]user/1000,[leg_timeout=20,x=1]user/1001@example.com",
    )
    .unwrap();
    assert_eq!(ds.vars(), &vars(&[("ignore_early_media", "true"), ("origination_caller_id_name", "Sales, EU")]));
    let legs = &ds.groups()[0];
    assert_eq!(legs[0].vars(), &vars(&[("leg_timeout", "10")]));
    assert_eq!(legs[0].endpoint(), &user("1000"));
    assert_eq!(legs[1].vars(), &vars(&[("leg_timeout", "20"), ("x", "1")]));
    assert_eq!(legs[1].endpoint(), &Endpoint::User { id: "1001".into(), domain: Some("example.com".into()) });
}

#[test]
fn dial_string_every_endpoint_kind() {
    let ds = DialString::parse(
        "user/1000,sofia/internal/sip:1001@192.0.2.1:5060;transport=tcp|sofia/gateway/carrier/+15551234567|error/NO_ANSWER",
    )
    .unwrap();
    let g = ds.groups();
    assert_eq!(g[0][0].endpoint(), &user("1000"));
    assert_eq!(
        g[0][1].endpoint(),
        &Endpoint::Sofia { profile: "internal".into(), uri: "sip:1001@192.0.2.1:5060;transport=tcp".into() }
    );
    assert_eq!(g[1][0].endpoint(), &Endpoint::Gateway { gateway: "carrier".into(), number: "+15551234567".into() });
    assert_eq!(g[2][0].endpoint(), &Endpoint::Error { cause: "NO_ANSWER".into() });
}

#[test]
fn dial_string_tolerates_spaces_around_separators() {
    let ds = DialString::parse(" user/1000 , user/1001 | user/1002 ").unwrap();
    assert_eq!(endpoints(&ds), vec![vec!["user/1000", "user/1001"], vec!["user/1002"]]);
}

#[test]
fn malformed_dial_strings_are_rejected() {
    use DialStringError as E;
    let cases: Vec<(&str, DialStringError)> = vec![
        ("", E::Empty),
        ("   ", E::Empty),
        ("user/1000,", E::EmptyEndpoint { at: 10 }),
        ("user/1000||user/1", E::EmptyEndpoint { at: 10 }),
        ("{a=1", E::Unclosed { open: '{', at: 0 }),
        ("[a=1user/1000", E::Unclosed { open: '[', at: 0 }),
        ("{a='x}user/1", E::Unclosed { open: '\'', at: 3 }),
        ("{novalue}user/1", E::BadVariable { item: "novalue".into() }),
        ("{=1}user/1", E::BadVariable { item: "=1".into() }),
        ("user/1|{a=1}user/2", E::MisplacedGlobals { at: 7 }),
        ("[a=1]", E::EmptyEndpoint { at: 5 }),
        ("{a=1}", E::EmptyEndpoint { at: 5 }),
        ("loopback/1000", E::UnknownEndpoint { endpoint: "loopback/1000".into() }),
        ("1000", E::UnknownEndpoint { endpoint: "1000".into() }),
        ("user/", E::MalformedEndpoint { endpoint: "user/".into(), expected: "user/<id>[@domain]" }),
        ("user/1000@", E::MalformedEndpoint { endpoint: "user/1000@".into(), expected: "user/<id>[@domain]" }),
        (
            "user/1 000",
            E::MalformedEndpoint {
                endpoint: "user/1 000".into(),
                expected: "no spaces, brackets, braces or quotes inside an endpoint",
            },
        ),
        (
            "sofia/internal",
            E::MalformedEndpoint { endpoint: "sofia/internal".into(), expected: "sofia/<profile>/<sip-uri>" },
        ),
        (
            "sofia/internal/",
            E::MalformedEndpoint { endpoint: "sofia/internal/".into(), expected: "sofia/<profile>/<sip-uri>" },
        ),
        (
            "sofia/gateway/carrier",
            E::MalformedEndpoint {
                endpoint: "sofia/gateway/carrier".into(),
                expected: "sofia/gateway/<name>/<number>",
            },
        ),
        (
            "sofia/gateway//123",
            E::MalformedEndpoint { endpoint: "sofia/gateway//123".into(), expected: "sofia/gateway/<name>/<number>" },
        ),
        ("error/", E::MalformedEndpoint { endpoint: "error/".into(), expected: "error/<CAUSE>, e.g. error/USER_BUSY" }),
        (
            "error/USER BUSY",
            E::MalformedEndpoint {
                endpoint: "error/USER BUSY".into(),
                expected: "no spaces, brackets, braces or quotes inside an endpoint",
            },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(DialString::parse(input), Err(want), "input {input:?}");
    }
}

// ---- never panic on input ----

/// Dialplan-shaped text: fragments of real syntax glued at random.
fn xmlish() -> impl Strategy<Value = String> {
    let frag = prop::sample::select(vec![
        "<include>",
        "</include>",
        "<context name=\"default\">",
        "</context>",
        "<extension name=\"x\" continue=\"true\">",
        "</extension>",
        "<condition field=\"destination_number\" expression=\"^(\\d+)$\">",
        "<condition regex=\"xor\">",
        "<regex field=\"a\" expression=\"(\"/>",
        "</condition>",
        "<action application=\"set\" data=\"a=$1\" inline=\"true\"/>",
        "<anti-action application=\"log\" data=\"${a}\"/>",
        "<X-PRE-PROCESS cmd=\"set\" data=\"a=b\"/>",
        "<X-PRE-PROCESS cmd=\"include\" data=\"*.xml\"/>",
        "$${a}",
        "&amp;",
        "&#0;",
        "<![CDATA[x]]>",
        "<!-- c -->",
        "\n",
        "<",
        ">",
        "\"",
    ]);
    prop::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn dial_string_parse_never_panics(s in ".{0,80}") {
        let _ = DialString::parse(&s);
    }

    #[test]
    fn dial_string_parse_never_panics_on_dial_string_alphabet(s in "[{}\\[\\]',|=/@a-z0-9 ]{0,40}") {
        let _ = DialString::parse(&s);
    }

    #[test]
    fn dialplan_parse_never_panics(s in ".{0,200}") {
        let _ = Dialplan::parse(&s, "p.xml", &Variables::new());
    }

    #[test]
    fn dialplan_parse_and_hunt_never_panic_on_dialplan_shaped_text(s in xmlish(), dest in "[0-9a-z$(){}]{0,8}") {
        if let Ok(plan) = Dialplan::parse(&s, "p.xml", &Variables::new()) {
            let mut v = vars(&[("destination_number", dest.as_str())]);
            let _ = plan.hunt("default", &mut v);
        }
    }

    #[test]
    fn expand_never_panics(t in ".{0,60}", n in 0usize..4) {
        let caps: Vec<Option<String>> = (0..n).map(|i| (i % 2 == 0).then(|| "c".to_string())).collect();
        let _ = expand(&t, &vars(&[("a", "b")]), &caps);
    }
}
