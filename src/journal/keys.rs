//! Every Redis key komisi uses, built in one place from the configured prefix.
//!
//! The journal is split into partitions (`KOMISI_JOURNAL_PARTITIONS`): every
//! key of one partition carries the same hash tag, `{<prefix>:p07}`, so a
//! partition's stream, live-entry hash, epoch and lease sit in one slot of a
//! Redis Cluster and the Lua scripts that touch several of them work there
//! unchanged. Keys shared by the instances carry `{<prefix>}`.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// The journal partition of an event's partition key: CRC-32 (IEEE, the
/// same as MySQL's `CRC32()`, which recovery's SQL uses) of the key, mod
/// `partitions`. Stable across versions and instances.
pub fn partition_of(key: &str, partitions: u16) -> u16 {
    (crc32fast::hash(key.as_bytes()) % u32::from(partitions.max(1))) as u16
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }
    fn tag(&self, part: u16) -> String {
        format!("{{{}:p{part:02}}}", self.prefix)
    }
    /// The stream of a partition's event references.
    pub fn stream(&self, part: u16) -> String {
        format!("{}:journal", self.tag(part))
    }
    /// A random marker written when a partition's stream is created: its
    /// absence means the partition's journal was lost (flush, restart without
    /// persistence, a cluster node lost, deleted keys).
    pub fn epoch(&self, part: u16) -> String {
        format!("{}:epoch", self.tag(part))
    }
    /// Hash of event id → the id of its one live journal entry (journaled and
    /// not yet acknowledged), so recovery never journals an event twice.
    pub fn live(&self, part: u16) -> String {
        format!("{}:live", self.tag(part))
    }
    /// The partition's lease: the id of the instance that reads it, with a TTL.
    pub fn lease(&self, part: u16) -> String {
        format!("{}:lease", self.tag(part))
    }
    /// Sorted set of live instances, scored by when their membership expires (ms).
    pub fn members(&self) -> String {
        format!("{{{}}}:members", self.prefix)
    }
    /// The partition count every instance must agree on.
    pub fn partitions(&self) -> String {
        format!("{{{}}}:partitions", self.prefix)
    }
    /// The consumer group every komisi instance reads through.
    pub fn group(&self) -> &'static str {
        "komisi"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_crc32_mod_p_and_keys_share_one_hash_tag() {
        // CRC32('a:aff-1') as MySQL computes it: SELECT CRC32('a:aff-1').
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926, "the IEEE check value");
        for key in ["a:aff-1", "b:buyer-9", ""] {
            let p = partition_of(key, 16);
            assert!(p < 16);
            assert_eq!(p as u32, crc32fast::hash(key.as_bytes()) % 16);
        }
        assert_eq!(partition_of("anything", 1), 0);
        let k = Keys::new("komisi");
        assert_eq!(k.stream(7), "{komisi:p07}:journal");
        assert_eq!(k.live(7), "{komisi:p07}:live");
        assert_eq!(k.lease(123), "{komisi:p123}:lease");
        assert_eq!(k.members(), "{komisi}:members");
    }
}
