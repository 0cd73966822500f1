//! Outbound webhooks: endpoints, the outbox every money-moving transaction
//! writes to ([`NotifyTx`]), and the delivery worker's claims and attempts.
use super::Result;
use crate::domain::audit::AuditEntry;
use crate::domain::webhook::{AfterAttempt, Attempt, Endpoint, Health, Message, MessageFilter, OutboxRow, Subscriber};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait Webhooks: Send + Sync {
    async fn insert_endpoint(&self, e: &Endpoint, audit: &AuditEntry) -> Result<()>;
    /// Every endpoint, oldest first.
    async fn webhook_endpoints(&self) -> Result<Vec<Endpoint>>;
    async fn webhook_endpoint(&self, id: &str) -> Result<Option<Endpoint>>;
    /// Writes the endpoint's settings, secrets and state; false when it is gone.
    async fn update_endpoint(&self, e: &Endpoint, audit: &AuditEntry) -> Result<bool>;
    /// Deletes the endpoint with its messages and their attempts.
    async fn delete_endpoint(&self, id: &str, audit: &AuditEntry) -> Result<bool>;
    /// Newest first, rows below `before`, each with its attempts.
    async fn webhook_messages(&self, f: &MessageFilter, before: Option<u64>, limit: u32) -> Result<Vec<Message>>;
    async fn webhook_message(&self, id: &str) -> Result<Option<Message>>;
    /// Queues a message again (any status): pending, due at `now`, a fresh
    /// schedule. False when there is no such message.
    async fn requeue_message(&self, id: &str, now: DateTime<Utc>, audit: &AuditEntry) -> Result<bool>;
    /// Queues again the endpoint's failed messages created in the window.
    /// The audited writes here record `audit` in their transaction when they
    /// change something (with the count, where they return one).
    async fn requeue_failed(
        &self,
        endpoint: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<u64>;
    /// Takes up to `limit` of the endpoint's due messages for one attempt
    /// each, leased under `claim` until `until` (a message leased by
    /// another claim is left alone until its lease passes).
    async fn claim_messages(
        &self,
        endpoint: &str,
        limit: u32,
        claim: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Message>>;
    /// Records a batch's attempts under its claim — each attempt, and what
    /// its message becomes (only while the claim still holds it: a message
    /// queued again meanwhile stays queued) — and the endpoint's health: a
    /// success clears `failing_since`; a batch with none sets it if unset and
    /// disables the endpoint when it was set before `disable_before` (or at
    /// once on a 410). One transaction; returns whether it disabled the endpoint.
    async fn record_attempts(
        &self,
        endpoint: &str,
        claim: &str,
        attempts: &[(u64, &Attempt, AfterAttempt)],
        health: &Health,
    ) -> Result<bool>;
    /// Deletes up to `limit` messages of this status created before `before`
    /// (of one endpoint, or all), with their attempts; returns how many.
    async fn prune_messages(
        &self,
        status: crate::domain::webhook::MessageStatus,
        before: DateTime<Utc>,
        endpoint: Option<&str>,
        limit: u32,
        audit: Option<&AuditEntry>,
    ) -> Result<u64>;
    async fn pending_messages(&self) -> Result<u64>;
}

/// The outbox, inside a transaction that moves money: messages written here
/// commit or roll back with the change they describe.
#[async_trait::async_trait]
pub trait NotifyTx: Send {
    /// The enabled endpoints and what they subscribe to.
    async fn subscribers(&mut self) -> Result<Vec<Subscriber>>;
    async fn enqueue(&mut self, rows: &[OutboxRow], now: DateTime<Utc>) -> Result<()>;
}
