//! Private keys that come from outside keybound (a partner's PKCS#12 file, a PEM key) on their way into a
//! backend: `keybound keys import`. [`ImportKey`] holds the key as PKCS#8 DER in a `Zeroizing` buffer and
//! hands it only to this crate's import functions ([`crate::pkcs11::import`], [`crate::file::import`]):
//! **the key bytes enter key-provider here and never leave it again**.

use zeroize::Zeroizing;

use crate::{KeyError, KeySpec, PublicKey};

/// A private key to import into a backend. Its `Debug` shows the key type only.
pub struct ImportKey {
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl std::fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKey")
            .field("key", &self.public.describe())
            .finish_non_exhaustive()
    }
}

impl ImportKey {
    /// Reads a private key from PEM text or DER bytes (PKCS#8, PKCS#1 RSA, SEC1 EC); RSA of 2048 to 8192
    /// bits, EC P-256 and P-384. The input is not kept (the caller wipes its own buffer).
    ///
    /// ```
    /// # fn main() -> Result<(), key_provider::KeyError> {
    /// let pkcs8 = key_provider::software::generate_pkcs8(key_provider::KeySpec::Ec(key_provider::EcCurve::P256))?;
    /// let key = key_provider::ImportKey::from_bytes(&pkcs8)?;
    /// assert_eq!(key.public_key().describe(), "EC P-256");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for anything else; [`KeyError::KeyTooSmall`] for RSA under 2048 bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let (pkcs8, public) = crate::software::to_pkcs8(bytes)?;
        Ok(Self { pkcs8, public })
    }

    /// Reads a private key from DER bytes (PKCS#8, PKCS#1 RSA, SEC1 EC), as [`ImportKey::from_bytes`]
    /// but never taking the bytes for PEM text.
    ///
    /// # Errors
    /// As [`ImportKey::from_bytes`].
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let (pkcs8, public) = crate::software::der_to_pkcs8_any(der)?;
        Ok(Self { pkcs8, public })
    }

    /// The key's public half.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's type and size.
    #[must_use]
    pub fn spec(&self) -> KeySpec {
        match &self.public {
            PublicKey::Ec { curve, .. } => KeySpec::Ec(*curve),
            PublicKey::Rsa { .. } => KeySpec::Rsa(self.public.bits()),
        }
    }

    /// PKCS#8 `PrivateKeyInfo` DER.
    #[cfg_attr(not(any(feature = "file", feature = "pkcs11")), allow(dead_code))]
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}
