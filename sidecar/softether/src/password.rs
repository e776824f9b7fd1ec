//! SoftEther password hashing (`HashPassword` in Cedar/Account.c, `SecurePassword` in Cedar/Sam.c).

use crate::sha0::Sha0;

/// `SHA0(password || ASCII-UPPERCASE(username))` — what the server stores for a password user.
pub fn hash_password(username: &str, password: &str) -> [u8; 20] {
    let mut h = Sha0::new();
    h.update(password.as_bytes());
    h.update(username.to_ascii_uppercase().as_bytes());
    h.finalize()
}

/// `SHA0(hashed_password || server_random)` — the `secure_password` sent with authtype 1.
pub fn secure_password(hashed: &[u8; 20], server_random: &[u8; 20]) -> [u8; 20] {
    let mut h = Sha0::new();
    h.update(hashed);
    h.update(server_random);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha0::hex;

    #[test]
    fn protocol_doc_vectors() {
        let hashed = hash_password("alice", "s3cret");
        assert_eq!(hex(&hashed), "dfcf8606d9da786b68b328cdb929851d3881d8a4");
        let mut random = [0u8; 20];
        for (i, b) in random.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(
            hex(&secure_password(&hashed, &random)),
            "d3a86052606202d334901b3cc1f9eb8a8d9e0774"
        );
        assert_eq!(
            hex(&secure_password(&hashed, &[0xaa; 20])),
            "4d5bc8bdaee940a1bf57a24809a31b9db432d6c9"
        );
        assert_eq!(
            hex(&hash_password("alice", "")),
            "6a18e99e88f473726bc3b5e1e9d6836529c49a80"
        );
        assert_eq!(
            hex(&hash_password("administrator", "")),
            "6e9c375ff3b913c6ba1ba71c9e5e2e5e60ed9302"
        );
    }

    #[test]
    fn username_case_does_not_matter() {
        assert_eq!(
            hash_password("Alice", "s3cret"),
            hash_password("alice", "s3cret")
        );
        assert_eq!(
            hash_password("ALICE", "s3cret"),
            hash_password("alice", "s3cret")
        );
        // Password case does.
        assert_ne!(
            hash_password("alice", "S3cret"),
            hash_password("alice", "s3cret")
        );
    }
}
