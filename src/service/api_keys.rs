//! API keys: how a caller proves which org it acts for.
//!
//! A key is `cua_` followed by 64 hex digits (256 random bits). Only its SHA-256 is stored: with
//! that much entropy a fast hash is safe (no dictionary to try), and it lets a request find its
//! key with one indexed lookup. The plain key is shown once, when it is made.
//!
//! A key that authenticated is remembered for a moment ([`KeyCache`]), so a client polling
//! status does not pay a lookup per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use sha2::{Digest, Sha256};

use super::Service;
use crate::domain::{OrgContext, Permission, hex};
use crate::entity::{api_key, org};
use crate::error::{AppError, AppResult};

const KEY_PREFIX: &str = "cua_";
const KEY_LEN: usize = KEY_PREFIX.len() + 64;

/// A key just made: `key` is the only copy of the secret.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub key: String,
    pub record: api_key::Model,
}

pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// How long [`KeyCache`] trusts a key by default.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Keys remembered at most; past it the least used are evicted (they cost a lookup again).
const KEY_CACHE_ENTRIES: usize = 10_000;

/// Keys that authenticated lately, by their SHA-256, with what they stand for and when they
/// were looked up; and keys that did not (unknown or revoked), so a wrong key sent again is
/// refused without asking the database. A key that is unknown cannot become valid (keys are
/// made at random when created, and a revoked key stays revoked), so that answer keeps.
pub struct KeyCache {
    ttl_ms: AtomicU64,
    entries: quick_cache::sync::Cache<[u8; 32], (OrgContext, Instant)>,
    refused: quick_cache::sync::Cache<[u8; 32], ()>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl_ms: AtomicU64::new(ttl.as_millis() as u64),
            entries: quick_cache::sync::Cache::new(KEY_CACHE_ENTRIES),
            refused: quick_cache::sync::Cache::new(KEY_CACHE_ENTRIES),
        }
    }

    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(ttl.as_millis() as u64, Ordering::Relaxed);
        self.entries.clear();
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    fn get(&self, digest: &[u8; 32]) -> Option<OrgContext> {
        let ttl = self.ttl();
        if ttl.is_zero() {
            return None;
        }
        self.entries
            .get(digest)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(org, _)| org)
    }

    fn put(&self, digest: [u8; 32], org: OrgContext) {
        if !self.ttl().is_zero() {
            self.entries.insert(digest, (org, Instant::now()));
        }
    }

    pub(super) fn forget(&self, api_key_id: i64) {
        self.entries
            .retain(|_, (org, _)| org.api_key_id != api_key_id);
    }
}

fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex(&bytes))
}

impl Service {
    /// Makes a key for `org_id`, creating the org if it does not exist yet.
    pub async fn create_api_key(
        &self,
        org_id: i64,
        name: &str,
        permission: Permission,
    ) -> AppResult<NewApiKey> {
        if org_id <= 0 {
            return Err(AppError::BadUserInput(
                "org id must be a positive integer".into(),
            ));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AppError::BadUserInput(
                "key name must be 1 to 200 characters".into(),
            ));
        }
        let key = generate_key();
        let now = crate::domain::now();
        let txn = self.begin_write().await?;
        if org::Entity::find_by_id(org_id).one(&*txn).await?.is_none() {
            org::ActiveModel {
                id: Set(org_id),
                name: Set(format!("org {org_id}")),
                created_on: Set(now),
            }
            .insert(&*txn)
            .await?;
        }
        let record = api_key::ActiveModel {
            org_id: Set(org_id),
            name: Set(name.to_owned()),
            permission: Set(permission),
            key_hash: Set(hash_key(&key)),
            key_prefix: Set(key[..KEY_PREFIX.len() + 8].to_owned()),
            created_on: Set(now),
            revoked_on: Set(None),
            ..Default::default()
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        Ok(NewApiKey { key, record })
    }

    pub async fn list_api_keys(&self, org_id: Option<i64>) -> AppResult<Vec<api_key::Model>> {
        let mut q = api_key::Entity::find();
        if let Some(org_id) = org_id {
            q = q.filter(api_key::Column::OrgId.eq(org_id));
        }
        Ok(q.order_by_asc(api_key::Column::Id).all(&self.db).await?)
    }

    /// Revokes a key for good. Revoking a revoked key changes nothing.
    pub async fn revoke_api_key(&self, id: i64) -> AppResult<api_key::Model> {
        let found = api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("API key", id))?;
        if found.revoked_on.is_some() {
            return Ok(found);
        }
        let mut active: api_key::ActiveModel = found.into();
        active.revoked_on = Set(Some(crate::domain::now()));
        let turn = self.write_turn().await;
        let revoked = active.update(&self.db).await?;
        drop(turn);
        self.keys.forget(revoked.id);
        self.events.publish_key_revoked(revoked.id).await;
        Ok(revoked)
    }

    /// `false` once the key is revoked (or gone).
    pub async fn api_key_active(&self, id: i64) -> AppResult<bool> {
        Ok(api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .is_some_and(|k| k.revoked_on.is_none()))
    }

    /// The org and permission a presented key stands for; `UNAUTHENTICATED` when it is missing,
    /// malformed, unknown or revoked (all alike, so a caller learns nothing from the difference).
    /// `before_lookup` runs only when the database must be asked (the key is in neither cache):
    /// the transport's limit on that work per client, whose error is returned as it is.
    pub async fn authenticate(
        &self,
        presented: Option<&str>,
        before_lookup: impl FnOnce() -> AppResult<()>,
    ) -> AppResult<OrgContext> {
        let key = presented.map(str::trim).filter(|k| !k.is_empty()).ok_or_else(|| {
            AppError::Unauthenticated(
                "an API key is required: send `Authorization: Bearer <key>` or `X-CAP-API-OAUTH-TOKEN: <key>`".into(),
            )
        })?;
        let invalid = || AppError::Unauthenticated("invalid or revoked API key".into());
        if key.len() != KEY_LEN || !key.starts_with(KEY_PREFIX) {
            return Err(invalid());
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(org) = self.keys.get(&digest) {
            return Ok(org);
        }
        if self.keys.refused.get(&digest).is_some() {
            return Err(invalid());
        }
        before_lookup()?;
        let Some(found) = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hex(&digest)))
            .filter(api_key::Column::RevokedOn.is_null())
            .one(&self.db)
            .await?
        else {
            self.keys.refused.insert(digest, ());
            return Err(invalid());
        };
        let org = OrgContext {
            org_id: found.org_id,
            permission: found.permission,
            api_key_id: found.id,
        };
        self.keys.put(digest, org.clone());
        Ok(org)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_well_formed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert!(a.starts_with(KEY_PREFIX));
        assert!(a[KEY_PREFIX.len()..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(hash_key(&a).len(), 64);
        assert_ne!(hash_key(&a), hash_key(&b));
    }
}
