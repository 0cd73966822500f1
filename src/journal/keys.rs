//! Every Redis key komisi uses, built in one place from the configured prefix.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }
    /// The stream of event references.
    pub fn stream(&self) -> String {
        format!("{}:journal", self.prefix)
    }
    /// A random marker written when the journal is created: its absence means
    /// the journal was lost (flush, restart without persistence, deleted keys).
    pub fn epoch(&self) -> String {
        format!("{}:journal:epoch", self.prefix)
    }
    /// Hash of event id → the id of its one live journal entry (journaled and
    /// not yet acknowledged), so recovery never journals an event twice.
    pub fn live(&self) -> String {
        format!("{}:journal:live", self.prefix)
    }
    /// A consumer's heartbeat: present while its instance is alive.
    pub fn heartbeat(&self, consumer: &str) -> String {
        format!("{}:consumer:{consumer}", self.prefix)
    }
    /// The consumer group every komisi instance reads through.
    pub fn group(&self) -> &'static str {
        "komisi"
    }
}
