//! Encryption of connection credentials at rest (AES-256-GCM via aws-lc-rs).
//!
//! Each ciphertext is `nonce (12 bytes) || sealed`, stored with the key id so keys can rotate.
//! The additional authenticated data binds a ciphertext to its tenant and connection, so a
//! blob copied to another row (or tenant) does not decrypt. Credentials are write-only through
//! the API: nothing here is ever serialised into a customer response (a tenant move sends the
//! plaintext once, node to node, to be sealed with the target region's key).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CryptoError {
    /// The key is not 32 bytes.
    #[error("credentials key must be 32 bytes")]
    BadKey,
    /// Random generation or sealing failed.
    #[error("sealing failed")]
    Seal,
    /// Wrong key, tampered blob, or a blob from another row.
    #[error("credentials cannot be decrypted")]
    Open,
}

/// A per-region credentials key.
pub(crate) struct CredentialCipher {
    kid: String,
    key: LessSafeKey,
    rng: SystemRandom,
}

impl CredentialCipher {
    /// Builds a cipher from 32 raw key bytes.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] when `key` is not 32 bytes.
    pub(crate) fn new(kid: &str, key: &[u8]) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            kid: kid.to_owned(),
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// The key id stored next to ciphertexts.
    #[must_use]
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    fn aad(tenant: Uuid, connection: Uuid) -> [u8; 32] {
        let mut aad = [0u8; 32];
        aad[..16].copy_from_slice(tenant.as_bytes());
        aad[16..].copy_from_slice(connection.as_bytes());
        aad
    }

    /// Encrypts `plaintext` for one connection of one tenant.
    ///
    /// # Errors
    /// [`CryptoError::Seal`] if the system RNG fails.
    pub(crate) fn seal(
        &self,
        tenant: Uuid,
        connection: Uuid,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CryptoError::Seal)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(tenant, connection)),
                &mut buf,
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts a blob made by [`Self::seal`] for the same tenant and connection.
    ///
    /// # Errors
    /// [`CryptoError::Open`] on any mismatch. Used only by tenant moves: the source node opens
    /// credentials to send them to the target node, which seals them with its own key, and
    /// both open them to compare plaintext digests.
    pub(crate) fn open(
        &self,
        tenant: Uuid,
        connection: Uuid,
        blob: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(tenant, connection)), &mut buf)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_binding() {
        let c = CredentialCipher::new("k1", &[9; 32]).unwrap();
        let (t, conn) = (Uuid::new_v4(), Uuid::new_v4());
        let blob = c.seal(t, conn, b"{\"token\":\"s3cret\"}").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(c.open(t, conn, &blob).unwrap(), b"{\"token\":\"s3cret\"}");
        // Moved to another tenant or row: refused.
        assert!(c.open(Uuid::new_v4(), conn, &blob).is_err());
        assert!(c.open(t, Uuid::new_v4(), &blob).is_err());
        // Another key: refused.
        let other = CredentialCipher::new("k2", &[8; 32]).unwrap();
        assert!(other.open(t, conn, &blob).is_err());
        assert!(CredentialCipher::new("k", &[0; 31]).is_err());
    }
}
