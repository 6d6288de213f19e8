use bytes::Bytes;

use super::*;
use crate::sip::message::Framing;
use crate::sip::transport::TransportKind;

const CONFIG: RegistrarConfig = RegistrarConfig {
    min_expires: 60,
    max_expires: 7200,
    default_expires: 3600,
    nat_detection: crate::registrar::NatDetection::Private,
};

fn peer() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        remote: "192.0.2.7:5062".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
    }
}

fn register(call_id: &str, cseq: u32, extra: &str) -> Message {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK{call_id}{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@example.com>;tag=f1\r\nTo: <sip:1000@example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nUser-Agent: phone/1.0\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text), Framing::Datagram).unwrap()
}

fn contacts(r: &Registered) -> Vec<(String, u64)> {
    r.bindings.iter().map(|b| (b.contact.clone(), b.expires_at)).collect()
}

#[test]
fn binding_added_with_default_and_header_and_param_expires_rfc3261_10_3() {
    let mut reg = Registrar::new(CONFIG);
    let r = reg.register(1000, "1000", &register("c1", 1, "Contact: <sip:1000@192.0.2.7:5062>\r\n"), peer()).unwrap();
    assert_eq!(contacts(&r), [("sip:1000@192.0.2.7:5062".to_string(), 1000 + 3600)]);
    assert_eq!(r.bindings[0].user_agent.as_deref(), Some("phone/1.0"));
    assert_eq!(r.bindings[0].source, peer());
    let r = reg
        .register(1000, "1000", &register("c1", 2, "Contact: <sip:1000@192.0.2.7:5062>\r\nExpires: 120\r\n"), peer())
        .unwrap();
    assert_eq!(contacts(&r), [("sip:1000@192.0.2.7:5062".to_string(), 1120)]);
    let r = reg
        .register(
            1000,
            "1000",
            &register("c1", 3, "Contact: <sip:1000@192.0.2.7:5062>;expires=300\r\nExpires: 120\r\n"),
            peer(),
        )
        .unwrap();
    assert_eq!(contacts(&r), [("sip:1000@192.0.2.7:5062".to_string(), 1300)]);
    assert_eq!(r.changes.len(), 1);
    assert!(matches!(&r.changes[0], Change::Upsert { aor, .. } if aor == "1000"));
}

#[test]
fn several_contacts_per_aor_sorted_by_q() {
    let mut reg = Registrar::new(CONFIG);
    reg.register(
        1000,
        "1000",
        &register("c1", 1, "Contact: <sip:1000@192.0.2.7:5062>;q=0.5, <sip:1000@198.51.100.1>;q=0.9\r\n"),
        peer(),
    )
    .unwrap();
    reg.register(1000, "1000", &register("c2", 1, "Contact: <sip:1000@203.0.113.5;transport=tcp>\r\n"), peer())
        .unwrap();
    let order: Vec<_> = reg.lookup("1000", 1000).iter().map(|b| b.contact.clone()).collect();
    assert_eq!(order, ["sip:1000@203.0.113.5;transport=tcp", "sip:1000@198.51.100.1", "sip:1000@192.0.2.7:5062"]);
    assert_eq!(reg.lookup("1001", 1000).len(), 0);
}

#[test]
fn too_brief_gets_423_and_too_long_is_capped_rfc3261_10_3_step_7() {
    let mut reg = Registrar::new(CONFIG);
    let e =
        reg.register(1000, "1000", &register("c1", 1, "Contact: <sip:1000@h>\r\nExpires: 30\r\n"), peer()).unwrap_err();
    assert_eq!(e, RegisterError::IntervalTooBrief { min_expires: 60 });
    assert_eq!(e.status(), 423);
    assert_eq!(reg.aor_count(), 0);
    let r = reg.register(1000, "1000", &register("c1", 2, "Contact: <sip:1000@h>;expires=999999\r\n"), peer()).unwrap();
    assert_eq!(contacts(&r), [("sip:1000@h".to_string(), 1000 + 7200)]);
}

#[test]
fn unregister_one_contact_and_wildcard_rfc3261_10_2_2() {
    let mut reg = Registrar::new(CONFIG);
    reg.register(1000, "1000", &register("c1", 1, "Contact: <sip:1000@a>, <sip:1000@b>\r\n"), peer()).unwrap();
    let r = reg.register(1000, "1000", &register("c1", 2, "Contact: <sip:1000@a>;expires=0\r\n"), peer()).unwrap();
    assert_eq!(contacts(&r), [("sip:1000@b".to_string(), 4600)]);
    assert_eq!(r.changes, [Change::Remove { aor: "1000".into(), contact: "sip:1000@a".into() }]);
    let e = reg.register(1000, "1000", &register("c1", 3, "Contact: *\r\n"), peer()).unwrap_err();
    assert_eq!(e, RegisterError::BadWildcard);
    let r = reg.register(1000, "1000", &register("c1", 4, "Contact: *\r\nExpires: 0\r\n"), peer()).unwrap();
    assert!(r.bindings.is_empty());
    assert_eq!(r.changes, [Change::Remove { aor: "1000".into(), contact: "sip:1000@b".into() }]);
    assert_eq!(reg.aor_count(), 0);
}

#[test]
fn query_without_contact_lists_bindings_rfc3261_10_2_3() {
    let mut reg = Registrar::new(CONFIG);
    reg.register(1000, "1000", &register("c1", 1, "Contact: <sip:1000@a>\r\n"), peer()).unwrap();
    let r = reg.register(1001, "1000", &register("c9", 1, ""), peer()).unwrap();
    assert_eq!(contacts(&r), [("sip:1000@a".to_string(), 4600)]);
    assert!(r.changes.is_empty());
}

#[test]
fn out_of_order_cseq_for_the_same_call_id_fails_rfc3261_10_3_step_7() {
    let mut reg = Registrar::new(CONFIG);
    reg.register(1000, "1000", &register("c1", 5, "Contact: <sip:1000@a>\r\n"), peer()).unwrap();
    let e = reg.register(1000, "1000", &register("c1", 5, "Contact: <sip:1000@a>;expires=0\r\n"), peer()).unwrap_err();
    assert_eq!(e, RegisterError::OutOfOrder);
    // A different Call-ID may replace the binding whatever its CSeq.
    let r = reg.register(1000, "1000", &register("c2", 1, "Contact: <sip:1000@a>\r\n"), peer()).unwrap();
    assert_eq!(r.bindings[0].call_id, "c2");
}

#[test]
fn contacts_compare_as_uris_rfc3261_19_1_4() {
    assert!(same_contact("sip:1000@EXAMPLE.com", "sip:1000@example.com"));
    assert!(same_contact("sip:%31000@example.com", "sip:1000@example.com"));
    assert!(!same_contact("sip:1000@example.com", "sip:1000@example.com:5060"));
    assert!(!same_contact("sip:1000@example.com;transport=tcp", "sip:1000@example.com"));
    assert!(!same_contact("sips:1000@example.com", "sip:1000@example.com"));
}

#[test]
fn expired_bindings_are_purged_and_not_looked_up() {
    let mut reg = Registrar::new(CONFIG);
    reg.register(
        1000,
        "1000",
        &register("c1", 1, "Contact: <sip:1000@a>;expires=60, <sip:1000@b>;expires=600\r\n"),
        peer(),
    )
    .unwrap();
    assert_eq!(reg.next_expiry(), Some(1060));
    assert_eq!(reg.lookup("1000", 1060).len(), 1);
    assert_eq!(reg.purge(1060), [Change::Remove { aor: "1000".into(), contact: "sip:1000@a".into() }]);
    assert_eq!(reg.purge(1600), [Change::Remove { aor: "1000".into(), contact: "sip:1000@b".into() }]);
    assert_eq!(reg.aor_count(), 0);
    assert_eq!(reg.next_expiry(), None);
}

#[test]
fn restored_bindings_are_found() {
    let mut reg = Registrar::new(CONFIG);
    let b = Binding {
        contact: "sip:1000@a".into(),
        expires_at: 5000,
        q: None,
        call_id: "x".into(),
        cseq: 3,
        source: peer(),
        user_agent: None,
        instance: Some("\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"".into()),
    };
    reg.restore("1000", b.clone());
    assert_eq!(reg.lookup("1000", 4000), [&b]);
}

#[test]
fn non_sip_contact_and_bad_expires_are_refused() {
    let mut reg = Registrar::new(CONFIG);
    let e = reg.register(1000, "1000", &register("c1", 1, "Contact: <tel:+15551234>\r\n"), peer()).unwrap_err();
    assert_eq!(e, RegisterError::BadContact("contact URI must be sip or sips"));
    let e =
        reg.register(1000, "1000", &register("c1", 2, "Contact: <sip:a@b>\r\nExpires: soon\r\n"), peer()).unwrap_err();
    assert_eq!(e.status(), 400);
}

#[test]
fn contact_limit_per_aor() {
    let mut reg = Registrar::new(CONFIG);
    let many: Vec<String> = (0..MAX_BINDINGS_PER_AOR + 1).map(|i| format!("<sip:1000@h{i}>")).collect();
    let e = reg
        .register(1000, "1000", &register("c1", 1, &format!("Contact: {}\r\n", many.join(", "))), peer())
        .unwrap_err();
    assert_eq!(e, RegisterError::TooManyContacts);
    assert_eq!(e.status(), 403);
    assert_eq!(reg.aor_count(), 0, "a refused REGISTER changes nothing");
}

fn binding(contact: &str, source: &str, transport: TransportKind) -> Binding {
    Binding {
        contact: contact.into(),
        expires_at: 4000,
        q: None,
        call_id: "c".into(),
        cseq: 1,
        source: Peer { transport, remote: source.parse().unwrap(), local: "192.0.2.1:5060".parse().unwrap() },
        user_agent: None,
        instance: None,
    }
}

#[test]
fn requests_go_to_the_contact_unless_the_phone_is_behind_a_nat() {
    use NatDetection::*;
    let at = |b: &Binding, nat| b.target(nat).remote.to_string();
    // Registered by a provisioning server (third party): the phone is at its Contact.
    let third_party = binding("sip:1000@198.51.100.20:5070", "203.0.113.5:5060", TransportKind::Udp);
    assert_eq!(at(&third_party, Private), "198.51.100.20:5070");
    assert_eq!(at(&third_party, Aggressive), "203.0.113.5:5060");
    assert_eq!(at(&third_party, Always), "203.0.113.5:5060");
    // The REGISTER left from another port than the Contact names: the Contact.
    let other_port = binding("sip:1000@198.51.100.20", "198.51.100.20:40000", TransportKind::Udp);
    assert_eq!(at(&other_port, Private), "198.51.100.20:5060");
    assert_eq!(at(&other_port, Aggressive), "198.51.100.20:40000");
    // Behind a NAT: a private Contact, a public source.
    let natted = binding("sip:1000@192.168.1.20:5060", "203.0.113.9:61000", TransportKind::Udp);
    assert_eq!(at(&natted, Private), "203.0.113.9:61000");
    assert_eq!(at(&natted, Never), "192.168.1.20:5060");
    // A host name, or TCP (the registration's own connection): the source.
    let named = binding("sip:1000@phone.example.com", "203.0.113.9:5060", TransportKind::Udp);
    assert_eq!(at(&named, Private), "203.0.113.9:5060");
    let tcp = binding("sip:1000@198.51.100.20:5070;transport=tcp", "198.51.100.20:50123", TransportKind::Tcp);
    assert_eq!(at(&tcp, Never), "198.51.100.20:50123");
    assert_eq!(NatDetection::parse("aggressive"), Some(Aggressive));
    assert_eq!(NatDetection::parse("sometimes"), None);
}
