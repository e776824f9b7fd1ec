use super::*;

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempDir(std::env::temp_dir().join(format!("se-state-{tag}-{}-{n}", std::process::id())))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn record(cid: &str) -> AttachmentRecord {
    AttachmentRecord {
        last_address: Some("192.168.30.10/24".parse().unwrap()),
        ..crate::testing::record(cid, "vpn0", "/run/netns/p", "5E:01:02:03:04:05")
    }
}

#[test]
fn keys_are_validated_and_unambiguous() {
    assert!(AttachmentKey::new("abc-1.2_x", "vpn0").is_ok());
    for (id, ifname) in [
        ("", "vpn0"),
        ("-x", "vpn0"),
        ("../x", "vpn0"),
        ("a:b", "vpn0"),
        ("a b", "vpn0"),
        ("é", "vpn0"),
        ("a", ""),
        ("a", ".."),
        ("a", "x/y"),
        ("a", "x:y"),
        ("a", "x\u{7}"),
        ("a", "0123456789abcdef"),
    ] {
        assert!(AttachmentKey::new(id, ifname).is_err(), "{id:?} {ifname:?}");
    }
    let a = AttachmentKey::new("a.b", "c").unwrap().file_name();
    let b = AttachmentKey::new("a", "b.c").unwrap().file_name();
    assert_ne!(a, b);
}

#[test]
fn container_ids_are_bounded_so_every_file_name_fits() {
    let longest = "a".repeat(MAX_CONTAINER_ID_LEN);
    let key = AttachmentKey::new(&longest, "123456789012345").unwrap();
    // The longest name written: the temporary file of write_atomically.
    let tmp = format!(".{}.tmp-{}-{}", key.file_name(), 4_194_304, u64::MAX);
    assert!(tmp.len() <= 255, "{}", tmp.len());
    let too_long = "a".repeat(MAX_CONTAINER_ID_LEN + 1);
    assert_eq!(
        validate_container_id(&too_long),
        Err(KeyError::ContainerIdTooLong {
            len: MAX_CONTAINER_ID_LEN + 1
        })
    );
    assert!(matches!(
        validate_container_id(&"-".repeat(300)),
        Err(KeyError::ContainerIdPattern(shown)) if shown.len() == MAX_CONTAINER_ID_LEN
    ));
    // And the file system takes it.
    let tmpdir = TempDir::new("long");
    let dir = StateDir::open(&tmpdir.0).unwrap();
    let mut rec = record(&longest);
    rec.ifname = "123456789012345".into();
    dir.save(&rec).unwrap();
    assert_eq!(dir.record(&key).unwrap(), Some(rec));
}

#[test]
fn file_names_map_back_to_keys() {
    let key = AttachmentKey::new("c1", "vpn0").unwrap();
    assert_eq!(AttachmentKey::from_file_name(&key.file_name()), Some(key));
    for name in [
        ".c1:vpn0.json.tmp-1-2",
        "c1:vpn0.txt",
        "c1.json",
        "-c:vpn0.json",
        "c1:a:b.json",
    ] {
        assert_eq!(AttachmentKey::from_file_name(name), None, "{name}");
    }
}

#[test]
fn records_round_trip_atomically_without_password() {
    let tmp = TempDir::new("rec");
    let dir = StateDir::open(&tmp.0).unwrap();
    let mut rec = record("c1");
    dir.save(&rec).unwrap();
    rec.last_address = Some("192.168.30.11/24".parse().unwrap());
    dir.save(&rec).unwrap();
    let all: Vec<_> = dir
        .records()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all, vec![rec.clone()]);
    let key = rec.key().unwrap();
    assert_eq!(dir.record(&key).unwrap(), Some(rec.clone()));
    assert_eq!(dir.record_keys().unwrap(), vec![key.clone()]);
    let text = fs::read_to_string(dir.record_path(&key)).unwrap();
    assert!(text.contains("passwordFile") && !text.contains("\"password\""));
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.record_path(&key))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // No temporary files left behind.
    assert_eq!(fs::read_dir(dir.attachments()).unwrap().count(), 1);
    dir.remove(&key).unwrap();
    dir.remove(&key).unwrap();
    assert!(dir.records().unwrap().is_empty());
    assert_eq!(dir.record(&key).unwrap(), None);
}

#[test]
fn tombstones_and_broken_files_are_listed() {
    let tmp = TempDir::new("tomb");
    let dir = StateDir::open(&tmp.0).unwrap();
    let key = AttachmentKey::new("c2", "vpn0").unwrap();
    let t = Tombstone {
        container_id: "c2".into(),
        ifname: "vpn0".into(),
        network: "vpnnet".into(),
        netns: None,
        deleted_at: 5,
    };
    dir.write_tombstone(&t).unwrap();
    assert!(dir.has_tombstone(&key));
    fs::write(dir.attachments().join("junk.json"), b"{").unwrap();
    let tombs = dir.tombstones_list().unwrap();
    assert_eq!(tombs.len(), 1);
    assert_eq!(tombs[0].as_ref().unwrap(), &t);
    let recs = dir.records().unwrap();
    assert!(matches!(recs[0], Err(StateError::Invalid { .. })));
    assert!(
        dir.record_keys().unwrap().is_empty(),
        "junk.json names no key"
    );
    dir.remove_tombstone(&key).unwrap();
    assert!(dir.tombstones_list().unwrap().is_empty());
}

#[test]
fn a_plugin_view_creates_nothing_until_it_writes_a_tombstone() {
    let tmp = TempDir::new("view");
    let view = StateDir::at(&tmp.0);
    assert!(!view.exists());
    let key = AttachmentKey::new("c1", "vpn0").unwrap();
    assert_eq!(view.record(&key).unwrap(), None);
    fs::create_dir_all(&tmp.0).unwrap();
    view.write_tombstone(&Tombstone {
        container_id: "c1".into(),
        ifname: "vpn0".into(),
        network: String::new(),
        netns: Some("/run/netns/p".into()),
        deleted_at: unix_now(),
    })
    .unwrap();
    assert!(view.has_tombstone(&key));
}

#[test]
fn facts_round_trip_and_stay_bounded() {
    let dir = TempDir::new("hubs");
    let state = StateDir::open(&dir.0).unwrap();
    assert_eq!(state.hubs().unwrap(), hubs::HubsRecord::default());
    let mut record = hubs::HubsRecord {
        version: hubs::HUBS_VERSION,
        ..hubs::HubsRecord::default()
    };
    assert!(record.set_ipv6("198.18.0.1:443/VPN", true, 10));
    assert!(!record.set_ipv6("198.18.0.1:443/VPN", true, 11));
    assert!(record.set_ipv6("198.18.0.1:443/VPN", false, 12));
    assert!(!record.set_ipv6(&"x".repeat(hubs::MAX_HUB_KEY_LEN + 1), true, 12));
    state.save_hubs(&record).unwrap();
    let read = state.hubs().unwrap();
    assert_eq!(read.ipv6("198.18.0.1:443/VPN"), Some(false));
    assert_eq!(read.ipv6("198.18.0.1:443/OTHER"), None);
    for i in 0..hubs::MAX_HUBS as u64 + 5 {
        record.set_ipv6(&format!("h{i}:443/VPN"), true, 100 + i);
    }
    assert_eq!(record.hubs.len(), hubs::MAX_HUBS);
    assert_eq!(record.ipv6("h0:443/VPN"), None, "the oldest went first");
    assert_eq!(
        record.ipv6(&format!("h{}:443/VPN", hubs::MAX_HUBS + 4)),
        Some(true)
    );
    std::fs::write(state.hubs_path(), b"{not json").unwrap();
    assert!(state.hubs().is_err());
}
