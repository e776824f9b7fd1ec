//! Replays the committed corpus through every target body on stable, so CI checks every seed
//! and every past finding without nightly or libFuzzer.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use softether_fuzz::TARGETS;

fn fuzz_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_replays_through_its_target() {
    let mut replayed = 0;
    for target in TARGETS {
        let files = corpus_files(target.name);
        assert!(!files.is_empty(), "corpus/{} has no seeds", target.name);
        for file in files {
            let data = fs::read(&file).expect("corpus file reads");
            // A panic names the file: rerun it with `cargo fuzz run <target> <file>`.
            eprintln!("{}: {}", target.name, file.display());
            (target.body)(&data);
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} corpus files");
}

#[test]
fn targets_binaries_and_corpus_directories_agree() {
    let names: BTreeSet<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names.len(), TARGETS.len(), "duplicate target names");

    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("Cargo.toml");
    let bins: BTreeSet<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "softether-fuzz")
        .collect();
    assert_eq!(bins, names, "[[bin]] entries in Cargo.toml vs TARGETS");

    for name in &names {
        let bin = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = fs::read_to_string(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        assert!(
            text.contains(&format!("softether_fuzz::targets::{name}(")),
            "{} does not call its body",
            bin.display()
        );
    }
    let dirs: BTreeSet<String> = fs::read_dir(fuzz_dir().join("corpus"))
        .expect("corpus dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(dirs, expected, "corpus/ directories vs TARGETS");
}
