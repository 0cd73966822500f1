//! Affiliates: the referral tree, each affiliate's status and balances, and the
//! pure choice of which ancestors a sale's upline levels are paid to.
use super::entitlement::AffiliateSnapshot;
use super::ids::{AffiliateId, BuyerId, ReferralCode};
use super::program::Program;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashSet;

/// The deepest referral tree walked; a guard against a cycle left by a bug or by hand.
pub const MAX_TREE_DEPTH: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AffiliateStatus {
    Active,
    Suspended,
}

impl AffiliateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// The SHA-256 of an e-mail address (trimmed and lowercased before
/// hashing, by the storefront), as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct EmailHash(String);

impl EmailHash {
    /// 64 hex digits, either case (kept lowercase).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err("must be the SHA-256 of the e-mail address as 64 hex digits")
        }
    }
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAffiliate {
    pub id: AffiliateId,
    pub name: String,
    pub parent_id: Option<AffiliateId>,
    pub referral_code: ReferralCode,
    pub buyer_id: Option<BuyerId>,
    /// SHA-256 (hex) of the affiliate's e-mail address, for the self-referral rule.
    pub email_hash: Option<EmailHash>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    pub pending: Decimal,
    pub approved: Decimal,
    pub paid: Decimal,
}

#[derive(Debug, Clone)]
pub struct Affiliate {
    pub id: AffiliateId,
    pub name: String,
    pub parent_id: Option<AffiliateId>,
    pub referral_code: ReferralCode,
    pub buyer_id: Option<BuyerId>,
    pub email_hash: Option<EmailHash>,
    pub status: AffiliateStatus,
    pub balances: Balances,
    pub created_at: DateTime<Utc>,
    /// Its own caps, replacing the program's (`PUT /admin/affiliates/{id}/caps`;
    /// an empty list: no caps); None: the program's.
    pub caps: Option<Vec<super::caps::Cap>>,
}

impl Affiliate {
    /// Whether `new` registers the same affiliate again (an idempotent retry).
    pub fn same_registration(&self, new: &NewAffiliate) -> bool {
        self.name == new.name
            && self.parent_id == new.parent_id
            && self.referral_code == new.referral_code
            && self.buyer_id == new.buyer_id
            && self.email_hash == new.email_hash
    }

    pub fn snapshot(&self) -> AffiliateSnapshot {
        AffiliateSnapshot {
            id: self.id.clone(),
            suspended: self.status == AffiliateStatus::Suspended,
            buyer_id: self.buyer_id.clone(),
            email_hash: self.email_hash.clone(),
            unqualified: false,
            caps: self.caps.clone(),
        }
    }
}

#[derive(Debug)]
pub enum CreateAffiliate {
    Created(Affiliate),
    /// The same id was registered before with the same data.
    Unchanged(Affiliate),
    Conflict(&'static str),
    UnknownParent,
}

#[derive(Debug, Default)]
pub struct AffiliatePatch {
    pub name: Option<String>,
    pub status: Option<AffiliateStatus>,
    /// `Some(None)` detaches the affiliate from its parent.
    pub parent_id: Option<Option<AffiliateId>>,
    /// `Some(None)` clears the e-mail hash (self-referral rule).
    pub email_hash: Option<Option<EmailHash>>,
}

/// An affiliate's changeable fields after a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    pub name: String,
    pub status: AffiliateStatus,
    pub parent_id: Option<AffiliateId>,
    pub email_hash: Option<EmailHash>,
}

#[derive(Debug)]
pub enum PatchAffiliate {
    Updated(Box<Affiliate>),
    NotFound,
    UnknownParent,
    Cycle,
}

impl AffiliatePatch {
    /// Whether the patch gives the affiliate a (new) parent: a change of
    /// the tree's shape, checked for cycles.
    pub fn reparents(&self) -> bool {
        matches!(self.parent_id, Some(Some(_)))
    }

    /// The affiliate's name, status, parent and e-mail hash after the patch
    /// (an absent field keeps its value).
    pub fn applied_to(&self, current: &Affiliate) -> Patched {
        Patched {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            status: self.status.unwrap_or(current.status),
            parent_id: self.parent_id.clone().unwrap_or_else(|| current.parent_id.clone()),
            email_hash: self.email_hash.clone().unwrap_or_else(|| current.email_hash.clone()),
        }
    }
}

/// Ancestors read per stretch of the cycle check.
pub const CYCLE_STRETCH: usize = 500;

/// Where the cycle check of a re-parenting stands after one stretch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleWalk {
    /// Making the new parent the affiliate's parent closes a loop (or the
    /// tree would be deeper than [`MAX_TREE_DEPTH`]).
    Cycle,
    /// The root is reached: no loop.
    Clear,
    /// Read the next stretch from this ancestor.
    Next(AffiliateId),
}

/// The cycle rule, one stretch at a time: giving `id` a new parent closes
/// a loop when `id` is the new parent or one of its ancestors. `stretch` is
/// the new parent's chain read so far in this step (nearest first, at most
/// `asked` of them), after `walked` ancestors checked before; a chain as
/// deep as [`MAX_TREE_DEPTH`] counts as a loop (the depth guard).
pub fn walk_for_cycle(id: &AffiliateId, stretch: &[Affiliate], asked: usize, walked: usize) -> CycleWalk {
    if stretch.iter().any(|a| a.id == *id) {
        return CycleWalk::Cycle;
    }
    if stretch.len() < asked {
        return CycleWalk::Clear;
    }
    if walked + stretch.len() >= MAX_TREE_DEPTH {
        return CycleWalk::Cycle;
    }
    match stretch.last().and_then(|a| a.parent_id.clone()) {
        Some(next) => CycleWalk::Next(next),
        None => CycleWalk::Clear,
    }
}

/// Rule 7's choice of beneficiaries, walked up the tree a stretch at a time:
/// ancestors are taken nearest first until every level 2..n can be filled
/// (a suspended ancestor does not fill a level when the program skips
/// inactive ones, but is kept so the entitlement can skip it), the root is
/// reached, or a loop or the depth guard stops the walk. The caller fetches
/// the stretches ([`UplineWalk::next_fetch`]); the choice is made here.
#[derive(Debug)]
pub struct UplineWalk {
    wanted: usize,
    skip_inactive: bool,
    filled: usize,
    upline: Vec<AffiliateSnapshot>,
    seen: HashSet<AffiliateId>,
    /// The next ancestor to take, if the walk goes on.
    cursor: Option<AffiliateId>,
    /// How many of `upline` the qualification rule has looked at.
    checked: usize,
}

impl UplineWalk {
    /// A walk from `direct` for `program`'s levels.
    pub fn new(program: &Program, direct: &Affiliate) -> Self {
        Self {
            wanted: program.levels.len().saturating_sub(1),
            skip_inactive: program.skip_inactive_upline,
            filled: 0,
            upline: Vec::new(),
            seen: HashSet::from([direct.id.clone()]),
            cursor: direct.parent_id.clone(),
            checked: 0,
        }
    }

    /// How many ancestors to ask for in the first stretch: a few more than
    /// the levels, in case some are suspended and skipped.
    pub fn first_stretch(program: &Program) -> usize {
        program.levels.len() + 3
    }

    /// Takes a fetched stretch: ancestors nearest first, starting at the
    /// walk's cursor. `asked` is how many were asked for: fewer means the
    /// stretch ends at the root.
    pub fn take(&mut self, stretch: Vec<Affiliate>, asked: usize) {
        let reached_root = stretch.len() < asked;
        for ancestor in stretch {
            if self.filled >= self.wanted {
                // Enough for now; the cursor stays here, in case an ancestor
                // taken is found unqualified and the walk must go on.
                return;
            }
            if self.upline.len() >= MAX_TREE_DEPTH
                || self.cursor.as_ref() != Some(&ancestor.id)
                || !self.seen.insert(ancestor.id.clone())
            {
                self.cursor = None;
                return;
            }
            let snapshot = ancestor.snapshot();
            if !snapshot.suspended || !self.skip_inactive {
                self.filled += 1;
            }
            self.cursor = ancestor.parent_id;
            self.upline.push(snapshot);
        }
        if reached_root {
            self.cursor = None;
        }
    }

    /// The next stretch to fetch — from which ancestor, how many — or None
    /// when the walk is complete.
    pub fn next_fetch(&self) -> Option<(AffiliateId, usize)> {
        if self.filled >= self.wanted {
            return None;
        }
        self.cursor.clone().map(|next| (next, self.wanted - self.filled + 4))
    }

    /// The ancestors taken since the last call that could earn a level
    /// (not suspended): the ones whose qualification the caller looks up.
    pub fn unchecked(&mut self) -> Vec<AffiliateId> {
        let fresh = self.upline[self.checked..].iter().filter(|a| !a.suspended).map(|a| a.id.clone()).collect();
        self.checked = self.upline.len();
        fresh
    }

    /// Marks these ancestors unqualified (rule 7's qualification): like a
    /// suspended one, each is skipped — the walk goes on for another — or
    /// forfeits its level, as the program says.
    pub fn mark_unqualified(&mut self, ids: &HashSet<AffiliateId>) {
        for a in self.upline.iter_mut().filter(|a| ids.contains(&a.id) && !a.unqualified) {
            a.unqualified = true;
            if self.skip_inactive && !a.suspended {
                self.filled -= 1;
            }
        }
    }

    pub fn finish(self) -> Vec<AffiliateSnapshot> {
        self.upline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affiliate(id: &str, parent: Option<&str>, suspended: bool) -> Affiliate {
        Affiliate {
            id: AffiliateId::parse(id).unwrap(),
            name: id.into(),
            parent_id: parent.map(|p| AffiliateId::parse(p).unwrap()),
            referral_code: ReferralCode::parse(&format!("code-{id}")).unwrap(),
            buyer_id: None,
            email_hash: None,
            status: if suspended { AffiliateStatus::Suspended } else { AffiliateStatus::Active },
            balances: Balances::default(),
            created_at: DateTime::<Utc>::MIN_UTC,
            caps: None,
        }
    }

    fn default_program() -> Program {
        Program::parse(&Program::default_doc()).unwrap()
    }

    fn ids(upline: &[AffiliateSnapshot]) -> Vec<&str> {
        upline.iter().map(|a| a.id.as_str()).collect()
    }

    #[test]
    fn the_walk_stops_once_every_level_is_filled() {
        let program = default_program(); // 3 levels: 2 ancestors wanted
        let direct = affiliate("C", Some("B"), false);
        let mut walk = UplineWalk::new(&program, &direct);
        walk.take(
            vec![affiliate("B", Some("A"), false), affiliate("A", Some("R"), false), affiliate("R", None, false)],
            6,
        );
        assert_eq!(walk.next_fetch(), None);
        assert_eq!(ids(&walk.finish()), ["B", "A"]);
    }

    #[test]
    fn suspended_ancestors_are_kept_but_fill_no_level_and_the_walk_fetches_on() {
        let program = default_program();
        let direct = affiliate("C", Some("S1"), false);
        let mut walk = UplineWalk::new(&program, &direct);
        walk.take(vec![affiliate("S1", Some("S2"), true), affiliate("S2", Some("B"), true)], 2);
        assert_eq!(walk.next_fetch(), Some((AffiliateId::parse("B").unwrap(), 6)));
        walk.take(vec![affiliate("B", Some("A"), false), affiliate("A", None, false)], 6);
        assert_eq!(walk.next_fetch(), None);
        assert_eq!(ids(&walk.finish()), ["S1", "S2", "B", "A"]);
    }

    #[test]
    fn an_unqualified_ancestor_is_skipped_and_the_walk_goes_on_or_forfeits_its_level() {
        let direct = affiliate("C", Some("B"), false);
        let stretch =
            || vec![affiliate("B", Some("A"), false), affiliate("A", Some("R"), false), affiliate("R", None, false)];
        let marked = HashSet::from([AffiliateId::parse("B").unwrap()]);
        // Skipping: B is checked, found unqualified, and R takes its place.
        let mut walk = UplineWalk::new(&default_program(), &direct);
        walk.take(stretch(), 2);
        assert_eq!(walk.unchecked(), [AffiliateId::parse("B").unwrap(), AffiliateId::parse("A").unwrap()]);
        assert_eq!(walk.next_fetch(), None, "two levels filled before the check");
        walk.mark_unqualified(&marked);
        assert_eq!(walk.next_fetch(), Some((AffiliateId::parse("R").unwrap(), 5)), "the walk resumes at R");
        walk.take(vec![affiliate("R", None, false)], 5);
        assert_eq!(walk.unchecked(), [AffiliateId::parse("R").unwrap()], "only R is new");
        let upline = walk.finish();
        assert_eq!(ids(&upline), ["B", "A", "R"]);
        assert!(upline[0].unqualified && !upline[1].unqualified);
        // Forfeiting: B keeps its place (and earns nothing); the walk is done.
        let mut doc = Program::default_doc();
        doc.skip_inactive_upline = false;
        let mut walk = UplineWalk::new(&Program::parse(&doc).unwrap(), &direct);
        walk.take(stretch(), 3);
        walk.unchecked();
        walk.mark_unqualified(&marked);
        assert_eq!(walk.next_fetch(), None);
        assert_eq!(ids(&walk.finish()), ["B", "A"]);
    }

    #[test]
    fn the_root_a_loop_or_a_foreign_row_ends_the_walk() {
        let program = default_program();
        let direct = affiliate("C", Some("B"), false);
        let mut walk = UplineWalk::new(&program, &direct);
        walk.take(vec![affiliate("B", None, false)], 6);
        assert_eq!(walk.next_fetch(), None);
        assert_eq!(ids(&walk.finish()), ["B"]);
        // C → B → C: B is taken, C again stops the walk.
        let mut walk = UplineWalk::new(&program, &direct);
        walk.take(vec![affiliate("B", Some("C"), true), affiliate("C", Some("B"), false)], 6);
        assert_eq!(walk.next_fetch(), None);
        assert_eq!(ids(&walk.finish()), ["B"]);
        // Without skipping, a suspended ancestor fills (forfeits) its level.
        let mut program = default_program();
        program.skip_inactive_upline = false;
        let mut walk = UplineWalk::new(&program, &direct);
        walk.take(vec![affiliate("B", Some("A"), true), affiliate("A", Some("R"), false)], 6);
        assert_eq!(ids(&walk.finish()), ["B", "A"]);
    }

    /// A chain `A0 → A1 → … → A(n−1)` (A0 the root) of `n` affiliates, nearest first from the top.
    fn line(n: usize) -> Vec<Affiliate> {
        (0..n)
            .rev()
            .map(|i| {
                let parent = (i > 0).then(|| format!("A{}", i - 1));
                affiliate(&format!("A{i}"), parent.as_deref(), false)
            })
            .collect()
    }

    #[test]
    fn a_new_parent_below_the_affiliate_closes_a_loop() {
        let chain = line(5); // A4 → A3 → … → A0
        let id = |s: &str| AffiliateId::parse(s).unwrap();
        assert_eq!(walk_for_cycle(&id("A2"), &chain, 10, 0), CycleWalk::Cycle);
        assert_eq!(walk_for_cycle(&id("A4"), &chain, 10, 0), CycleWalk::Cycle, "its own parent");
        assert_eq!(walk_for_cycle(&id("X"), &chain, 10, 0), CycleWalk::Clear, "the root is reached");
        // A full stretch goes on from its last ancestor's parent.
        assert_eq!(walk_for_cycle(&id("X"), &chain[..3], 3, 0), CycleWalk::Next(id("A1")));
        assert_eq!(walk_for_cycle(&id("X"), &chain, 5, 0), CycleWalk::Clear, "a full stretch ending at the root");
        // The depth guard: as deep as MAX_TREE_DEPTH counts as a loop.
        assert_eq!(walk_for_cycle(&id("X"), &chain[..3], 3, MAX_TREE_DEPTH - 3), CycleWalk::Cycle);
        assert_eq!(walk_for_cycle(&id("X"), &chain[..3], 3, MAX_TREE_DEPTH - 4), CycleWalk::Next(id("A1")));
    }

    #[test]
    fn a_patch_keeps_what_it_does_not_name() {
        let current = affiliate("C", Some("B"), false);
        let keep = AffiliatePatch::default();
        let hash = EmailHash::parse(&"ab".repeat(32)).unwrap();
        let current = Affiliate { email_hash: Some(hash.clone()), ..current };
        assert_eq!(
            keep.applied_to(&current),
            Patched {
                name: "C".to_owned(),
                status: AffiliateStatus::Active,
                parent_id: Some(AffiliateId::parse("B").unwrap()),
                email_hash: Some(hash)
            }
        );
        assert!(!keep.reparents());
        let detach = AffiliatePatch {
            parent_id: Some(None),
            status: Some(AffiliateStatus::Suspended),
            email_hash: Some(None),
            ..Default::default()
        };
        assert_eq!(detach.applied_to(&current).status, AffiliateStatus::Suspended);
        assert_eq!(detach.applied_to(&current).parent_id, None);
        assert_eq!(detach.applied_to(&current).email_hash, None, "the e-mail hash cleared");
        assert!(!detach.reparents(), "detaching cannot close a loop");
        let moved = AffiliatePatch { parent_id: Some(Some(AffiliateId::parse("A").unwrap())), ..Default::default() };
        assert!(moved.reparents());
    }
}
