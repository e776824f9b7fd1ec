//! The CNI plugin `softether`. Work in progress: see issue 4.

fn main() {
    println!(r#"{{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}}"#);
}
