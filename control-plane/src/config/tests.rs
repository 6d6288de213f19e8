use super::*;

fn err(text: &str) -> ConfigError {
    Config::parse(text, "test.toml").unwrap_err()
}

#[test]
fn embedded_default_is_loopback_with_twenty_users() {
    let c = Config::embedded().unwrap();
    assert_eq!(c.sip.udp, vec!["127.0.0.1:5060".parse::<SocketAddr>().unwrap()]);
    assert_eq!(c.sip.tcp, vec!["127.0.0.1:5060".parse::<SocketAddr>().unwrap()]);
    assert_eq!(c.ng.listen, Some("127.0.0.1:2223".parse::<SocketAddr>().unwrap()));
    assert_eq!((c.media.rtp_port_min, c.media.rtp_port_max), (16384, 32767));
    assert_eq!(c.storage.dir, PathBuf::from("./var"));
    assert_eq!(c.directory.users.len(), 20);
    let u = &c.directory.users[0];
    assert_eq!((u.id.as_str(), &u.secret), ("1000", &Secret::Password("1234".into())));
    assert_eq!((u.caller_id_name.as_str(), u.caller_id_number.as_str()), ("Extension 1000", "1000"));
    assert_eq!(c.directory.users[19].id, "1019");
    assert!(c.loopback_only());
    assert_eq!(
        (c.sip.t1, c.sip.t2, c.sip.t4),
        (Duration::from_millis(500), Duration::from_secs(4), Duration::from_secs(5))
    );
}

#[test]
fn omitted_keys_take_the_documented_defaults() {
    let mut empty = Config::parse("", "empty.toml").unwrap();
    empty.source = EMBEDDED_NAME.to_string();
    assert_eq!(empty, Config::embedded().unwrap());
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let e = err("[sip]\nudp = [\"127.0.0.1:5070\"]\nudp_port = 5\n");
    assert_eq!((e.file.as_str(), e.line, e.key.as_str()), ("test.toml", 3, "sip.udp_port"));
    assert!(e.message.contains("unknown field `udp_port`"), "{}", e.message);
    assert!(e.to_string().starts_with("test.toml:3: sip.udp_port: unknown field"), "{e}");
}

#[test]
fn unknown_table_is_named() {
    let e = err("\n[sipp]\nx = 1\n");
    assert_eq!((e.line, e.key.as_str()), (2, "sipp"));
}

#[test]
fn wrong_type_names_key_and_line() {
    let e = err("[media]\nrtp_port_min = \"low\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "media.rtp_port_min"));
    let e = err("[sip]\n\nt1_ms = true\n");
    assert_eq!((e.line, e.key.as_str()), (3, "sip.t1_ms"));
}

#[test]
fn bad_address_names_key_and_line() {
    let e = err("[sip]\nudp = [\n  \"127.0.0.1:5070\",\n  \"localhost\",\n]\n");
    assert_eq!((e.line, e.key.as_str()), (4, "sip.udp"));
    assert!(e.message.contains("\"localhost\" is not an address"), "{}", e.message);
}

#[test]
fn port_clashes_are_refused() {
    let e = err("[sip]\nudp = [\"127.0.0.1:5070\", \"0.0.0.0:5070\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "sip.udp"));
    assert!(e.message.contains("port clash"), "{}", e.message);
    let e = err("[sip]\nudp = [\"127.0.0.1:5070\"]\n[ng]\nlisten = \"127.0.0.1:5070\"\n");
    assert_eq!((e.line, e.key.as_str()), (4, "ng.listen"));
    let e = err("[sip]\nudp = [\"127.0.0.1:20000\"]\n[media]\nrtp_port_min = 16384\n");
    assert_eq!((e.line, e.key.as_str()), (4, "media.rtp_port_min"));
    assert!(e.message.contains("includes sip.udp port 20000"), "{}", e.message);
    // Different loopback addresses may share a port.
    assert!(Config::parse("[sip]\nudp = [\"127.0.0.1:5070\", \"127.0.0.2:5070\"]\n", "t").is_ok());
}

#[test]
fn ranges_are_checked() {
    let e = err("[sip]\nt1_ms = 0\n");
    assert_eq!((e.line, e.key.as_str()), (2, "sip.t1_ms"));
    let e = err("[sip]\nt1_ms = 800\nt2_ms = 400\n");
    assert_eq!((e.line, e.key.as_str()), (3, "sip.t2_ms"));
    let e = err("[media]\nrtp_port_min = 30000\nrtp_port_max = 20000\n");
    assert_eq!((e.line, e.key.as_str()), (3, "media.rtp_port_max"));
    let e = err("[media]\ncores = [4096]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "media.cores"));
    assert!(e.message.contains("core 4096 is not present"), "{}", e.message);
    let e = err("[storage]\ndir = \"x\"\ncommit_interval_ms = 5000\n");
    assert_eq!((e.line, e.key.as_str()), (3, "storage.commit_interval_ms"));
    let c = Config::parse("[storage]\ncommit_interval_ms = 0\n", "t").expect("0 is allowed");
    assert_eq!(c.storage.commit_interval, std::time::Duration::ZERO);
    let e = err("[log]\nlevel = \"loud=[\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "log.level"));
}

#[test]
fn public_bind_with_default_password_refuses_to_start() {
    let e = err("[sip]\nudp = [\"0.0.0.0:5060\"]\ntcp = []\n");
    assert_eq!(e.key, "directory.default_password");
    assert!(e.message.contains("refusing to start: 0.0.0.0:5060 is not a loopback address"), "{}", e.message);
    let e = err("[sip]\nudp = [\"192.0.2.10:5060\"]\n[directory]\ndefault_password = \"1234\"\n");
    assert_eq!((e.line, e.key.as_str()), (4, "directory.default_password"));
    let ok =
        Config::parse("[sip]\nudp = [\"0.0.0.0:5060\"]\n[directory]\ndefault_password = \"long-random-secret\"\n", "t")
            .unwrap();
    assert!(!ok.loopback_only());
    // One user left on the vanilla password is enough to refuse.
    let e = err("[sip]\nudp = [\"0.0.0.0:5060\"]\n[directory]\ndefault_password = \"s3cret-pw\"\nusers = []\n[[directory.user]]\nid = \"7\"\npassword = \"1234\"\n");
    assert!(e.message.contains("user 7 still has the default password"), "{}", e.message);
}

#[test]
fn users_and_ranges() {
    let c = Config::parse(
        "[directory]\ndefault_password = \"pw\"\nusers = [\"100-102\", \"alice\"]\n[[directory.user]]\nid = \"101\"\npassword = \"own\"\n",
        "t",
    )
    .unwrap();
    let got: Vec<_> = c.directory.users.iter().map(|u| (u.id.as_str(), u.secret.clone())).collect();
    let pw = |p: &str| Secret::Password(p.into());
    assert_eq!(got, [("100", pw("pw")), ("101", pw("own")), ("102", pw("pw")), ("alice", pw("pw"))]);
    let e = err("[directory]\nusers = [\"9-1\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "directory.users"));
}

#[test]
fn unreadable_file_is_reported() {
    let e = Config::load(Path::new("/nonexistent/ferroswitch.toml")).unwrap_err();
    assert_eq!((e.file.as_str(), e.line, e.key.as_str()), ("/nonexistent/ferroswitch.toml", 0, "(file)"));
}

#[test]
fn users_with_ha1_caller_id_and_variables() {
    let c = Config::parse(
        "[directory]\nusers = []\n[[directory.user]]\nid = \"2000\"\nha1 = \"0123456789ABCDEF0123456789abcdef\"\ncaller_id_name = \"Front Desk\"\nvariables = { toll_allow = \"local\", user_context = \"default\" }\n",
        "t",
    )
    .unwrap();
    let u = &c.directory.users[0];
    assert_eq!(u.secret, Secret::Ha1 { md5: Some("0123456789abcdef0123456789abcdef".into()), sha256: None });
    assert_eq!((u.caller_id_name.as_str(), u.caller_id_number.as_str()), ("Front Desk", "2000"));
    assert_eq!(u.variables.get("toll_allow").map(String::as_str), Some("local"));
    let e = err("[directory]\nusers = []\n[[directory.user]]\nid = \"2000\"\nha1 = \"xyz\"\n");
    assert_eq!((e.line, e.key.as_str()), (5, "directory.user.ha1"));
    let e = err("[directory]\nusers = []\n[[directory.user]]\nid = \"2000\"\n");
    assert_eq!((e.line, e.key.as_str()), (4, "directory.user"));
    assert!(e.message.contains("needs password, ha1 or ha1_sha256"), "{}", e.message);
    let e = err("[directory]\nusers = []\n[[directory.user]]\nid = \"2000\"\npassword = \"x\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n");
    assert_eq!((e.line, e.key.as_str()), (5, "directory.user.password"));
}

#[test]
fn registrar_and_auth_sections() {
    let c = Config::embedded().unwrap();
    assert_eq!(
        c.registrar,
        RegistrarConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            nat_detection: crate::registrar::NatDetection::Private,
        }
    );
    assert_eq!(
        c.auth,
        AuthConfig {
            trusted: vec![],
            nonce_lifetime_secs: 60,
            algorithms: vec![Algorithm::Md5],
            guard: crate::auth::guard::GuardConfig::default()
        }
    );
    let c = Config::parse("[auth]\nalgorithms = [\"SHA-256\"]\n", "t").unwrap();
    assert_eq!(c.auth.algorithms, [Algorithm::Sha256]);
    let e = err("[auth]\nalgorithms = [\"SHA-512\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "auth.algorithms"));
    let c = Config::parse("[auth]\ntrusted = [\"192.0.2.0/24\", \"2001:db8::/32\", \"127.0.0.5\"]\n", "t").unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(c.auth.trusted[0].contains(ip("192.0.2.200")));
    assert!(!c.auth.trusted[0].contains(ip("192.0.3.1")));
    assert!(c.auth.trusted[0].contains(ip("::ffff:192.0.2.9")));
    assert!(c.auth.trusted[1].contains(ip("2001:db8:1::7")));
    assert!(!c.auth.trusted[1].contains(ip("2001:db9::1")));
    assert!(c.auth.trusted[2].contains(ip("127.0.0.5")) && !c.auth.trusted[2].contains(ip("127.0.0.6")));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.1")));
    let e = err("[auth]\ntrusted = [\"10.0.0.0/33\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "auth.trusted"));
    let e = err("[registrar]\nmin_expires = 600\ndefault_expires = 300\n");
    assert_eq!((e.line, e.key.as_str()), (3, "registrar.default_expires"));
}

#[test]
fn management_endpoint_defaults_to_loopback_and_can_be_turned_off() {
    assert_eq!(Config::embedded().unwrap().management.http_listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(Config::parse("[management]\nhttp_listen = \"\"\n", "t").unwrap().management.http_listen, None);
    let e = err("[sip]\ntcp = [\"127.0.0.1:8080\"]\n[management]\nhttp_listen = \"127.0.0.1:8080\"\n");
    assert_eq!((e.line, e.key.as_str()), (4, "management.http_listen"));
}

#[test]
fn users_file_adds_and_overrides_users_and_reports_its_own_lines() {
    let dir = std::env::temp_dir().join(format!("ferroswitch-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("users.toml"), "[[user]]\nid = \"1000\"\npassword = \"new-pw\"\n\n[[user]]\nid = \"3000\"\nha1_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n").unwrap();
    let cfg = dir.join("ferroswitch.toml");
    std::fs::write(&cfg, "[directory]\nusers = [\"1000-1001\"]\nusers_file = \"users.toml\"\n").unwrap();
    let c = Config::load(&cfg).unwrap();
    let ids: Vec<_> = c.directory.users.iter().map(|u| (u.id.as_str(), u.secret.clone())).collect();
    assert_eq!(ids[0], ("1000", Secret::Password("new-pw".into())));
    assert_eq!(ids[1], ("1001", Secret::Password("1234".into())));
    assert_eq!(ids[2].0, "3000");
    assert_eq!(c.directory.users_file, Some(dir.join("users.toml")));
    std::fs::write(dir.join("users.toml"), "[[user]]\nid = \"1000\"\n\npasword = \"typo\"\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!((e.file, e.line), (dir.join("users.toml").display().to_string(), 4));
    assert!(e.message.contains("unknown field `pasword`"), "{}", e.message);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn freeswitch_xml_directory_as_users_file() {
    let dir = std::env::temp_dir().join(format!("ferroswitch-fsdir-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("default")).unwrap();
    std::fs::write(
        dir.join("default/1000.xml"),
        "<include>\n  <user id=\"1000\">\n    <params>\n      <param name=\"password\" value=\"$${default_password}\"/>\n      <param name=\"vm-password\" value=\"1000\"/>\n    </params>\n    <variables>\n      <variable name=\"user_context\" value=\"default\"/>\n      <variable name=\"effective_caller_id_name\" value=\"Reception\"/>\n      <variable name=\"effective_caller_id_number\" value=\"1000\"/>\n    </variables>\n  </user>\n</include>\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("default/2000.xml"),
        "<include>\n  <user id=\"2000\">\n    <params>\n      <param name=\"a1-hash\" value=\"0123456789ABCDEF0123456789ABCDEF\"/>\n    </params>\n  </user>\n</include>\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("directory.xml"),
        "<document type=\"freeswitch/xml\">\n  <section name=\"directory\">\n    <domain name=\"$${domain}\">\n      <groups><group name=\"default\"><users>\n        <X-PRE-PROCESS cmd=\"include\" data=\"default/*.xml\"/>\n      </users></group></groups>\n    </domain>\n  </section>\n</document>\n",
    )
    .unwrap();
    let cfg = dir.join("ferroswitch.toml");
    std::fs::write(
        &cfg,
        "[directory]\ndefault_password = \"pw-from-config\"\nusers = []\nusers_file = \"directory.xml\"\n",
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap();
    let u: Vec<_> =
        c.directory.users.iter().map(|u| (u.id.as_str(), u.secret.clone(), u.caller_id_name.as_str())).collect();
    assert_eq!(
        u,
        [
            ("1000", Secret::Password("pw-from-config".into()), "Reception"),
            (
                "2000",
                Secret::Ha1 { md5: Some("0123456789abcdef0123456789abcdef".into()), sha256: None },
                "Extension 2000"
            ),
        ]
    );
    assert_eq!(c.directory.users[0].variables.get("user_context").map(String::as_str), Some("default"));
    // A user without a secret is refused with its file and line.
    std::fs::write(dir.join("default/2000.xml"), "<include>\n\n  <user id=\"2000\"/>\n</include>\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!((e.file, e.line), (dir.join("default/2000.xml").display().to_string(), 3));
    assert!(e.message.contains("needs a password or a1-hash"), "{}", e.message);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bridged_media_keys_are_checked() {
    let c = Config::parse(
        "[media]\nrtp_ip = \"192.0.2.7\"\ncodec_prefs = \"PCMA,opus@48000h@20i\"\nrtp_timeout_secs = 0\n",
        "m.toml",
    )
    .unwrap();
    assert_eq!(c.media.rtp_ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(c.media.codec_prefs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["PCMA", "opus"]);
    assert_eq!(c.media.rtp_timeout_secs, 0);
    let d = Config::embedded().unwrap();
    assert_eq!((d.media.rtp_ip, d.media.rtp_timeout_secs, d.media.codec_prefs.len()), (None, 300, 4));
    let e = err("[media]\nrtp_ip = \"nowhere\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "media.rtp_ip"));
    let e = err("[media]\nrtp_ip = \"0.0.0.0\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "media.rtp_ip"));
    let e = err("[media]\n\ncodec_prefs = \"PCMU,@8000h\"\n");
    assert_eq!((e.line, e.key.as_str()), (3, "media.codec_prefs"));
    assert!(e.message.contains("bad codec name"), "{}", e.message);
    let e = err("[media]\nrtp_timeout_secs = 100000\n");
    assert_eq!((e.line, e.key.as_str()), (2, "media.rtp_timeout_secs"));
}

#[test]
fn a_directory_domains_and_groups_params_and_variables_apply_to_their_users() {
    let dir = std::env::temp_dir().join(format!("ferroswitch-fsdomain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("directory.xml"),
        r#"<document type="freeswitch/xml"><section name="directory">
  <domain name="$${domain}">
    <params><param name="password" value="domain-pw"/></params>
    <variables>
      <variable name="user_context" value="public"/>
      <variable name="toll_allow" value="domestic"/>
    </variables>
    <groups>
      <group name="sales">
        <variables><variable name="callgroup" value="sales"/></variables>
        <users>
          <user id="3000"/>
          <user id="3001">
            <params><param name="password" value="own-pw"/></params>
            <variables><variable name="user_context" value="default"/></variables>
          </user>
        </users>
      </group>
    </groups>
  </domain>
</section></document>
"#,
    )
    .unwrap();
    let cfg = dir.join("ferroswitch.toml");
    std::fs::write(&cfg, "[directory]\nusers = []\nusers_file = \"directory.xml\"\n").unwrap();
    let c = Config::load(&cfg).unwrap();
    let var = |i: usize, k: &str| c.directory.users[i].variables.get(k).cloned();
    assert_eq!(c.directory.users.len(), 2);
    assert_eq!(c.directory.users[0].secret, Secret::Password("domain-pw".into()));
    assert_eq!(c.directory.users[1].secret, Secret::Password("own-pw".into()), "the user's own param wins");
    assert_eq!(
        (var(0, "user_context"), var(0, "toll_allow"), var(0, "callgroup")),
        (Some("public".into()), Some("domestic".into()), Some("sales".into()))
    );
    assert_eq!(var(1, "user_context"), Some("default".into()), "the user's own variable wins");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_af_xdp_backend_needs_its_interface_and_address_and_names_bad_modes() {
    let base = "[media]\nbackend = \"af_xdp\"\n";
    let e = err(base);
    assert!(e.to_string().contains("media.xdp_interface"), "{e}");
    let e = err(&format!("{base}xdp_interface = \"eth0\"\n"));
    assert!(e.to_string().contains("media.rtp_ip"), "{e}");
    let e = err(&format!("{base}xdp_interface = \"eth0\"\nrtp_ip = \"192.0.2.1\"\nxdp_mode = \"fast\"\n"));
    assert!(e.to_string().contains("media.xdp_mode") && e.to_string().contains("test.toml:5"), "{e}");
    let e = err(&format!("{base}xdp_interface = \"eth0\"\nrtp_ip = \"192.0.2.1\"\nxdp_bind = \"zc\"\n"));
    assert!(e.to_string().contains("media.xdp_bind"), "{e}");
    let c = Config::parse(
        &format!(
            "{base}xdp_interface = \"eth0\"\nrtp_ip = \"192.0.2.1\"\nxdp_mode = \"generic\"\nxdp_bind = \"copy\"\n"
        ),
        "t.toml",
    )
    .unwrap();
    let x = c.media.xdp.expect("af_xdp options");
    assert_eq!((x.interface.as_str(), x.ipv4, x.ipv6), ("eth0", Some("192.0.2.1".parse().unwrap()), None));
    assert_eq!(
        (x.mode, x.bind),
        (Some(ferroswitch_media_plane::xdp::Mode::Generic), Some(ferroswitch_media_plane::xsk::XskMode::Copy))
    );
    assert_eq!(
        c.media.backend,
        Some(ferroswitch_media_plane::worker::Backend::Epoll),
        "epoll beside the AF_XDP sockets"
    );
}

#[test]
fn the_event_socket_defaults_to_loopback_8021_with_freeswitchs_password() {
    let c = Config::embedded().unwrap().esl;
    assert_eq!((c.listen, c.password.as_str()), (Some("127.0.0.1:8021".parse().unwrap()), "ClueCon"));
    assert_eq!(Config::parse("[esl]\nlisten = \"\"\n", "t").unwrap().esl.listen, None);
    let c =
        Config::parse("[esl]\nlisten = \"0.0.0.0:8021\"\npassword = \"long-secret\"\nacl = [\"10.0.0.0/8\"]\n", "t")
            .unwrap();
    assert_eq!(c.esl.acl.len(), 1);
}

#[test]
fn the_event_socket_refuses_the_default_password_off_loopback_and_names_the_key() {
    let e = err("[esl]\nlisten = \"0.0.0.0:8021\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "esl.password"));
    assert!(e.message.contains("ClueCon"), "{e}");
    let e = err("[esl]\nlisten = \"0.0.0.0:8021\"\npassword = \"ClueCon\"\n");
    assert_eq!((e.line, e.key.as_str()), (3, "esl.password"));
    let e = err("[esl]\nacl = [\"10.0.0.0/99\"]\n");
    assert_eq!((e.line, e.key.as_str()), (2, "esl.acl"));
    let e = err("[esl]\npassword = \"\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "esl.password"));
    let e = err("[esl]\nheartbeat_secs = 0\n");
    assert_eq!((e.line, e.key.as_str()), (2, "esl.heartbeat_secs"));
    let e = err("[management]\nhttp_listen = \"127.0.0.1:8021\"\n[esl]\nlisten = \"127.0.0.1:8021\"\n");
    assert_eq!((e.line, e.key.as_str()), (4, "esl.listen"));
}

#[test]
fn the_log_format_is_text_or_json() {
    assert!(!Config::embedded().unwrap().log.json);
    assert!(Config::parse("[log]\nformat = \"json\"\n", "t").unwrap().log.json);
    let e = err("[log]\nlevel = \"info\"\nformat = \"xml\"\n");
    assert_eq!((e.line, e.key.as_str()), (3, "log.format"));
}
