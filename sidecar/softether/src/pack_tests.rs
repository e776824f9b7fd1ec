use super::*;

fn hello_example() -> Pack {
    let mut p = Pack::new();
    p.add_str(
        "hello",
        "SoftEther VPN Server Developer Edition (64 bit) (Open Source)",
    );
    p.add_int("version", 501);
    p.add_int("build", 9674);
    let random: Vec<u8> = (0u8..20).collect();
    p.add_data("random", &random);
    p
}

#[test]
fn worked_example_is_byte_exact() {
    let mut p = Pack::new();
    p.add_str("method", "login");
    p.add_int("authtype", 1);
    let expected: Vec<u8> = [
        &[0, 0, 0, 2][..],
        &[0, 0, 0, 7],
        b"method",
        &[0, 0, 0, 2, 0, 0, 0, 1],
        &[0, 0, 0, 5],
        b"login",
        &[0, 0, 0, 9],
        b"authtype",
        &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
    ]
    .concat();
    assert_eq!(p.encode(), expected);
    assert_eq!(Pack::decode(&expected).unwrap(), p);
}

#[test]
fn hello_example_is_172_bytes() {
    let p = hello_example();
    let bytes = p.encode();
    assert_eq!(bytes.len(), 172);
    let back = Pack::decode(&bytes).unwrap();
    assert_eq!(back.get_int("build"), Some(9674));
    assert_eq!(back.get_data("random").unwrap().len(), 20);
}

#[test]
fn ipv4_encoding_byte_order() {
    let mut p = Pack::new();
    p.add_ipv4("ClientIpAddress", Ipv4Addr::new(192, 168, 1, 10));
    assert_eq!(p.len(), 4);
    assert_eq!(p.get_int("ClientIpAddress"), Some(0x0a01_a8c0));
    let bytes = p.encode();
    let needle = [0x0a, 0x01, 0xa8, 0xc0];
    assert!(bytes.windows(4).any(|w| w == needle));
    let back = Pack::decode(&bytes).unwrap();
    assert_eq!(
        back.get_ip("clientipaddress"),
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)))
    );
    assert!(!back.get_bool("ClientIpAddress@ipv6_bool"));
    assert_eq!(
        back.get_data("ClientIpAddress@ipv6_array").unwrap().len(),
        16
    );
}

#[test]
fn ip_reader_rules() {
    let mut p = Pack::new();
    p.add_ipv6("X", "2001:db8::1".parse().unwrap(), 3);
    assert_eq!(p.get_ip("X"), Some("2001:db8::1".parse().unwrap()));
    let mut q = Pack::new();
    q.add_bool("Y@ipv6_bool", false);
    assert_eq!(q.get_ip("Y"), None, "base INT element is required");
    q.add_int("Y", 0);
    assert_eq!(q.get_ip("Y"), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
}

#[test]
fn every_value_type_round_trips() {
    let mut p = Pack::new();
    p.add_int("i", 0xdead_beef);
    p.add_int64("i64", 0x0102_0304_0506_0708);
    p.add_bool("b", true);
    p.add_str("s", "hello");
    p.add_str("empty", "");
    p.add_unistr("u", "grüße");
    p.add_data("d", &[0, 1, 2, 255]);
    p.add_data("nodata", &[]);
    let bytes = p.encode();
    let q = Pack::decode(&bytes).unwrap();
    assert_eq!(q, p);
    assert_eq!(q.get_int("i"), Some(0xdead_beef));
    assert_eq!(q.get_int64("i64"), Some(0x0102_0304_0506_0708));
    assert!(q.get_bool("b"));
    assert_eq!(q.get_str("s"), Some("hello"));
    assert_eq!(q.get_str("empty"), Some(""));
    assert_eq!(q.get_unistr("u"), Some("grüße"));
    assert_eq!(q.get_data("d"), Some(&[0u8, 1, 2, 255][..]));
    assert_eq!(q.get_data("nodata"), Some(&[][..]));
    assert_eq!(q.encode(), bytes);
}

#[test]
fn unistr_wire_form_includes_nul() {
    let mut p = Pack::new();
    p.add_unistr("u", "ab");
    let bytes = p.encode();
    assert_eq!(&bytes[bytes.len() - 7..], &[0, 0, 0, 3, b'a', b'b', 0]);
}

#[test]
fn getters_are_type_strict() {
    let mut p = Pack::new();
    p.add_int64("max_connection", 4);
    p.add_str("n", "1");
    assert_eq!(p.get_int("max_connection"), None);
    assert!(!p.get_bool("max_connection"));
    assert_eq!(p.get_int("n"), None);
    assert_eq!(p.get_data("n"), None);
    assert_eq!(p.get_unistr("n"), None);
    assert_eq!(p.get_str("missing"), None);
}

#[test]
fn multi_value_elements() {
    let mut p = Pack::new();
    p.add_values(
        "Port",
        vec![Value::Int(443), Value::Int(992), Value::Int(5555)],
    );
    p.add_values(
        "HubName",
        vec![Value::Str("A".into()), Value::Str("B".into())],
    );
    let q = Pack::decode(&p.encode()).unwrap();
    assert_eq!(q.get_ints("port"), vec![443, 992, 5555]);
    assert_eq!(q.get_int("Port"), Some(443));
    assert_eq!(q.values("hubname").unwrap().len(), 2);
    assert!(q.get_ints("HubName").is_empty());
}

#[test]
fn lookup_is_case_insensitive_and_add_replaces() {
    let mut p = Pack::new();
    p.add_int("Session_Key", 1);
    assert_eq!(p.get_int("session_key"), Some(1));
    assert_eq!(p.get_int("SESSION_KEY"), Some(1));
    p.add_int("SESSION_key", 2);
    assert_eq!(p.len(), 1);
    assert_eq!(p.get_int("session_key"), Some(2));
    p.add_values("session_key", vec![]);
    assert!(p.is_empty());
}

fn element(name: &[u8], code: u32, values: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(name.len() as u32 + 1).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(values.len() as u32).to_be_bytes());
    for v in values {
        out.extend_from_slice(v);
    }
    out
}

fn pack_of(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (elements.len() as u32).to_be_bytes().to_vec();
    for e in elements {
        out.extend_from_slice(e);
    }
    out
}

#[test]
fn duplicate_names_reject_the_pack() {
    let one = [0, 0, 0, 1];
    let bytes = pack_of(&[element(b"abc", 0, &[&one]), element(b"ABC", 0, &[&one])]);
    assert_eq!(
        Pack::decode(&bytes),
        Err(PackError::DuplicateName("ABC".into()))
    );
}

#[test]
fn zero_length_name_and_empty_elements_are_rejected() {
    let mut bytes = pack_of(&[]);
    bytes[3] = 1;
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(Pack::decode(&bytes), Err(PackError::EmptyName));
    let bytes = pack_of(&[element(b"x", 0, &[])]);
    assert_eq!(
        Pack::decode(&bytes),
        Err(PackError::EmptyElement("x".into()))
    );
    let bytes = pack_of(&[element(b"x", 9, &[&[0, 0, 0, 0]])]);
    assert!(matches!(
        Pack::decode(&bytes),
        Err(PackError::BadType { code: 9, .. })
    ));
}

#[test]
fn bad_utf8_unistr_is_rejected_but_str_is_lossy() {
    let bytes = pack_of(&[element(b"u", 3, &[&[0, 0, 0, 2, 0xff, 0]])]);
    assert_eq!(Pack::decode(&bytes), Err(PackError::BadUtf8("u".into())));
    let bytes = pack_of(&[element(b"s", 2, &[&[0, 0, 0, 1, 0xff]])]);
    assert_eq!(Pack::decode(&bytes).unwrap().get_str("s"), Some("\u{fffd}"));
}

#[test]
fn long_names_are_truncated_like_c() {
    let long = [b'a'; 70];
    let bytes = pack_of(&[element(&long, 0, &[&[0, 0, 0, 7]])]);
    let p = Pack::decode(&bytes).unwrap();
    assert_eq!(p.get_int(&"a".repeat(63)), Some(7));
}

#[test]
fn trailing_bytes_are_ignored() {
    let mut bytes = hello_example().encode();
    bytes.extend_from_slice(b"junk");
    assert_eq!(Pack::decode(&bytes).unwrap(), hello_example());
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let mut p = hello_example();
    p.add_int64("i64", 5);
    p.add_unistr("u", "x");
    p.add_values("m", vec![Value::Int(1), Value::Int(2)]);
    let bytes = p.encode();
    for cut in 0..bytes.len() {
        assert!(Pack::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    assert!(Pack::decode(&bytes).is_ok());
}

#[test]
fn huge_counts_fail_without_huge_allocations() {
    // 262144 elements declared, nothing follows.
    let bytes = MAX_ELEMENTS.to_be_bytes();
    assert!(matches!(
        Pack::decode(&bytes),
        Err(PackError::Truncated { .. })
    ));
    assert_eq!(
        Pack::decode(&(MAX_ELEMENTS + 1).to_be_bytes()),
        Err(PackError::TooManyElements(MAX_ELEMENTS + 1))
    );
    let bytes = pack_of(&[element(b"x", 0, &[])]);
    let mut many = bytes.clone();
    let n = many.len();
    many[n - 4..].copy_from_slice(&MAX_VALUES.to_be_bytes());
    assert!(matches!(
        Pack::decode(&many),
        Err(PackError::Truncated { .. })
    ));
    many[n - 4..].copy_from_slice(&(MAX_VALUES + 1).to_be_bytes());
    assert!(matches!(
        Pack::decode(&many),
        Err(PackError::TooManyValues { .. })
    ));
    // A DATA value claiming 384 MiB + 1 and one claiming 4 GiB - 1.
    for size in [MAX_VALUE_SIZE + 1, u32::MAX] {
        let bytes = pack_of(&[element(b"d", 1, &[&size.to_be_bytes()])]);
        assert!(matches!(
            Pack::decode(&bytes),
            Err(PackError::TooLarge { .. })
        ));
    }
    let bytes = pack_of(&[element(b"d", 1, &[&MAX_VALUE_SIZE.to_be_bytes()])]);
    assert!(matches!(
        Pack::decode(&bytes),
        Err(PackError::Truncated { .. })
    ));
    // Name length u32::MAX.
    let mut bytes = 1u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Pack::decode(&bytes),
        Err(PackError::Truncated { .. })
    ));
}

#[test]
fn debug_redacts_secrets() {
    let mut p = Pack::new();
    p.add_data("secure_password", &[0x42; 20]);
    p.add_str("plain_password", "hunter2");
    p.add_str("username", "alice");
    let s = format!("{p:?}");
    assert!(!s.contains("hunter2") && !s.contains("66, 66"), "{s}");
    assert!(s.contains("alice"));
}
