//! Password hashing: a clear-text `password` never enters an event or the read model
//! (DESIGN.md: secrets are hashed with argon2 before they are stored).

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;

use crate::scim::ScimError;

/// Hashes a password with Argon2id (PHC string), off the async runtime: it takes tens of ms.
pub async fn hash(password: String) -> Result<String, ScimError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ScimError::invalid_value(format!("password cannot be hashed: {e}")))
    })
    .await
    .map_err(|_| ScimError::unavailable("password hashing was interrupted; retry the request"))?
}
