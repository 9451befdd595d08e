//! [`SubscriptionTree`]: which subscribers a PUBLISH reaches.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::str::Split;

use crate::topic::{valid_topic_filter, valid_topic_name};

/// Deepest filter the tree accepts, in levels. Matching recurses once per level of the tree,
/// so this bounds its stack use whatever clients subscribe to; deeper *topics* are still
/// matched (by `#` filters).
pub const MAX_TREE_LEVELS: usize = 128;

/// Below this many candidate results, duplicates are merged by a linear scan (no allocation);
/// above it, through a temporary hash map.
const LINEAR_DEDUP_MAX: usize = 32;

/// Why a filter was not added to a [`SubscriptionTree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// Not a valid topic filter.
    InvalidFilter,
    /// More than [`MAX_TREE_LEVELS`] levels.
    TooManyLevels,
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::InvalidFilter => f.write_str("invalid topic filter"),
            TreeError::TooManyLevels => {
                write!(f, "topic filter has more than {MAX_TREE_LEVELS} levels")
            }
        }
    }
}

impl std::error::Error for TreeError {}

/// A trie of topic filters by level, mapping each filter to its subscribers and their QoS.
///
/// A subscriber (key `K`) has at most one QoS per filter; subscribing again replaces it, as
/// in MQTT. [`SubscriptionTree::matches`] returns each subscriber once, with the highest QoS
/// among its filters that match.
pub struct SubscriptionTree<K> {
    root: Node<K>,
    /// Filters of each subscriber, so that [`SubscriptionTree::remove_all`] (a disconnect)
    /// costs the subscriber's own filters, not a walk of the whole tree.
    by_key: HashMap<K, HashSet<Box<str>>>,
    len: usize,
}

struct Node<K> {
    /// Children by literal level, boxed: most nodes of a fleet's tree have one child (a
    /// device's own topic), and a table slot the size of a whole node, in a table that holds
    /// at least four, cost each subscription about 700 bytes (docs/benchmarks.md, "Issue 17:
    /// idle connections").
    children: HashMap<Box<str>, Box<Node<K>>>,
    /// The `+` child.
    plus: Option<Box<Node<K>>>,
    /// Subscribers of exactly the filter that leads here.
    exact: HashMap<K, u8>,
    /// Subscribers of that filter followed by `/#` (or of `#`, at the root).
    multi: HashMap<K, u8>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            exact: HashMap::new(),
            multi: HashMap::new(),
        }
    }
}

impl<K> Node<K> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        1 + self.children.values().map(|c| c.count()).sum::<usize>()
            + self.plus.as_ref().map_or(0, |p| p.count())
    }
}

impl<K: Clone + Eq + Hash> Node<K> {
    /// Removes `key` from the filter whose remaining levels are `levels`, pruning emptied
    /// children on the way back. Recursion depth is bounded by the tree's depth.
    fn remove(&mut self, mut levels: Split<'_, char>, key: &K) -> bool {
        match levels.next() {
            None => self.exact.remove(key).is_some(),
            Some("#") => self.multi.remove(key).is_some(),
            Some("+") => {
                let Some(child) = self.plus.as_mut() else {
                    return false;
                };
                let removed = child.remove(levels, key);
                if child.is_empty() {
                    self.plus = None;
                }
                removed
            }
            Some(level) => {
                let Some(child) = self.children.get_mut(level) else {
                    return false;
                };
                let removed = child.remove(levels, key);
                if child.is_empty() {
                    self.children.remove(level);
                }
                removed
            }
        }
    }

    /// Appends the subscribers of filters under this node that match the remaining `levels`.
    /// `dollar_root` is set at the root for a `$` topic: wildcards must not match it there.
    /// `sources` counts the non-empty subscriber maps appended (duplicates need two).
    fn collect(
        &self,
        mut levels: Split<'_, char>,
        dollar_root: bool,
        out: &mut Vec<(K, u8)>,
        sources: &mut usize,
    ) {
        if !dollar_root {
            push_all(&self.multi, out, sources);
        }
        match levels.next() {
            None => push_all(&self.exact, out, sources),
            Some(level) => {
                if let Some(child) = self.children.get(level) {
                    child.collect(levels.clone(), false, out, sources);
                }
                if !dollar_root && let Some(plus) = &self.plus {
                    plus.collect(levels, false, out, sources);
                }
            }
        }
    }
}

fn push_all<K: Clone>(subscribers: &HashMap<K, u8>, out: &mut Vec<(K, u8)>, sources: &mut usize) {
    if !subscribers.is_empty() {
        *sources += 1;
        out.extend(subscribers.iter().map(|(k, q)| (k.clone(), *q)));
    }
}

/// Merges entries of `out[start..]` with equal keys, keeping the highest QoS.
fn dedup_max_qos<K: Clone + Eq + Hash>(out: &mut Vec<(K, u8)>, start: usize) {
    let mut write = start;
    if out.len() - start <= LINEAR_DEDUP_MAX {
        for read in start..out.len() {
            if let Some(j) = (start..write).find(|&j| out[j].0 == out[read].0) {
                out[j].1 = out[j].1.max(out[read].1);
            } else {
                out.swap(write, read);
                write += 1;
            }
        }
    } else {
        let mut position: HashMap<K, usize> = HashMap::with_capacity(out.len() - start);
        for read in start..out.len() {
            if let Some(&j) = position.get(&out[read].0) {
                out[j].1 = out[j].1.max(out[read].1);
            } else {
                position.insert(out[read].0.clone(), write);
                out.swap(write, read);
                write += 1;
            }
        }
    }
    out.truncate(write);
}

impl<K> Default for SubscriptionTree<K> {
    fn default() -> Self {
        SubscriptionTree {
            root: Node::default(),
            by_key: HashMap::new(),
            len: 0,
        }
    }
}

impl<K> fmt::Debug for SubscriptionTree<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTree")
            .field("subscriptions", &self.len)
            .field("subscribers", &self.by_key.len())
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash> SubscriptionTree<K> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes `key` to `filter` with `qos`, replacing the QoS of an existing identical
    /// subscription. Returns the previous QoS, if any. The filter is not ACL-checked here.
    pub fn insert(&mut self, filter: &str, key: K, qos: u8) -> Result<Option<u8>, TreeError> {
        if !valid_topic_filter(filter) {
            return Err(TreeError::InvalidFilter);
        }
        if filter.split('/').nth(MAX_TREE_LEVELS).is_some() {
            return Err(TreeError::TooManyLevels);
        }
        let mut node = &mut self.root;
        let mut multi = false;
        for level in filter.split('/') {
            match level {
                "#" => multi = true,
                "+" => node = node.plus.get_or_insert_with(Box::default),
                _ => {
                    // Two lookups rather than `entry`, which would allocate the key each time.
                    if !node.children.contains_key(level) {
                        node.children.insert(level.into(), Box::default());
                    }
                    node = node.children.get_mut(level).expect("inserted above");
                }
            }
        }
        let subscribers = if multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let previous = subscribers.insert(key.clone(), qos);
        if previous.is_none() {
            self.len += 1;
            self.by_key.entry(key).or_default().insert(filter.into());
        }
        Ok(previous)
    }

    /// Unsubscribes `key` from `filter`. Returns whether it was subscribed.
    pub fn remove(&mut self, filter: &str, key: &K) -> bool {
        let Some(filters) = self.by_key.get_mut(key) else {
            return false;
        };
        if !filters.remove(filter) {
            return false;
        }
        if filters.is_empty() {
            self.by_key.remove(key);
        }
        let removed = self.root.remove(filter.split('/'), key);
        debug_assert!(removed, "by_key and the trie disagree on {filter:?}");
        self.len -= usize::from(removed);
        removed
    }

    /// Unsubscribes `key` from every filter (a disconnect). Returns how many it had.
    pub fn remove_all(&mut self, key: &K) -> usize {
        let Some(filters) = self.by_key.remove(key) else {
            return 0;
        };
        let mut removed = 0;
        for filter in filters.iter() {
            removed += usize::from(self.root.remove(filter.split('/'), key));
        }
        debug_assert_eq!(removed, filters.len(), "by_key and the trie disagree");
        self.len -= removed;
        removed
    }

    /// Each subscriber with a filter matching `topic`, once, with its highest QoS among those
    /// filters; in no particular order. Empty for an invalid topic name.
    pub fn matches(&self, topic: &str) -> Vec<(K, u8)> {
        let mut out = Vec::new();
        self.matches_into(topic, &mut out);
        out
    }

    /// Like [`SubscriptionTree::matches`], appending to `out` (whose existing entries are left
    /// alone), so a caller can reuse one buffer.
    pub fn matches_into(&self, topic: &str, out: &mut Vec<(K, u8)>) {
        if !valid_topic_name(topic) {
            return;
        }
        let start = out.len();
        let mut sources = 0;
        self.root
            .collect(topic.split('/'), topic.starts_with('$'), out, &mut sources);
        // Keys are unique within one node's map: duplicates need two maps.
        if sources > 1 {
            dedup_max_qos(out, start);
        }
    }

    /// The filters `key` is subscribed to, in no particular order.
    pub fn filters_of(&self, key: &K) -> impl Iterator<Item = &str> {
        self.by_key
            .get(key)
            .into_iter()
            .flat_map(|filters| filters.iter().map(|f| &**f))
    }

    /// Number of (filter, subscriber) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.by_key.len()
    }

    /// Trie nodes, root included (tests check that removal prunes).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.root.count()
    }
}
