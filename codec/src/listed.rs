//! Lists that reports carry with a bound: every item counted, the first [`LISTED`] kept.
//!
//! A wrong key path fails every wallet of a table. Naming them all would grow a component's
//! memory, and what one call copies to the host, with the table (a million failures overran
//! both), so the reports of `wit/rotor.wit` name at most [`LISTED`] wallets beside a count of
//! them all. Components and the host share this type to agree on that bound.

use alloc::vec::Vec;
use core::cmp::Ordering;

/// The most items one report lists, as `wit/rotor.wit` says.
pub const LISTED: usize = 1_000;

/// Items counted, the first [`LISTED`] of them kept.
#[derive(Clone, Debug)]
pub struct Listed<T> {
    items: Vec<T>,
    count: u64,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed { items: Vec::new(), count: 0 }
    }
}

impl<T> Listed<T> {
    /// Counts `item`, and keeps it while fewer than [`LISTED`] are kept.
    pub fn push(&mut self, item: T) {
        self.count = self.count.saturating_add(1);
        if self.items.len() < LISTED {
            self.items.push(item);
        }
    }

    /// Adds what a report carries: `items` listed out of `count`. A count below the list's
    /// length (a component's error) is taken as the length, items beyond [`LISTED`] are
    /// dropped, however many a report lists, and the count saturates rather than wrap.
    pub fn extend(&mut self, items: Vec<T>, count: u64) {
        let listed = items.len() as u64;
        let room = LISTED.saturating_sub(self.items.len());
        self.items.extend(items.into_iter().take(room));
        self.count = self.count.saturating_add(count.max(listed));
    }

    /// Adds what a report carries, as [`Listed::extend`] does, but keeps the [`LISTED`] items
    /// first in `compare`'s order among those kept and `items`, sorted. Reports whose lists
    /// each keep their own first items in that order (workers walking a table in id order, say)
    /// add up to the first items of them all.
    pub fn merge_by(&mut self, items: Vec<T>, count: u64, compare: impl FnMut(&T, &T) -> Ordering) {
        let listed = items.len() as u64;
        self.items.extend(items);
        self.items.sort_by(compare);
        self.items.truncate(LISTED);
        self.count = self.count.saturating_add(count.max(listed));
    }

    /// How many were counted, kept or not.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// How many were counted and not kept.
    pub fn unlisted(&self) -> u64 {
        self.count - self.items.len() as u64
    }

    /// The items kept, in the order they came.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The items kept, for changes that keep their number (sorting, renaming).
    pub fn items_mut(&mut self) -> &mut [T] {
        &mut self.items
    }

    /// The items kept and the count of all, as a report carries them.
    pub fn into_parts(self) -> (Vec<T>, u64) {
        (self.items, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn counts_every_item_and_keeps_the_first_ones() {
        let mut listed = Listed::default();
        for i in 0..LISTED + 7 {
            listed.push(i);
        }
        assert_eq!((listed.count(), listed.unlisted()), ((LISTED + 7) as u64, 7));
        let (items, count) = listed.into_parts();
        assert_eq!(count, (LISTED + 7) as u64);
        assert_eq!(items.len(), LISTED);
        assert_eq!((items[0], items[LISTED - 1]), (0, LISTED - 1));
    }

    #[test]
    fn merged_reports_keep_the_first_items_of_them_all() {
        // Two workers' reports, each listing its own first LISTED of the even and odd numbers.
        let (even, odd): (Vec<usize>, Vec<usize>) = (0..2 * LISTED).partition(|n| n % 2 == 0);
        let mut all = Listed::default();
        all.merge_by(odd, 5 * LISTED as u64, |a, b| a.cmp(b));
        all.merge_by(even, 5 * LISTED as u64, |a, b| a.cmp(b));
        assert_eq!(all.items(), (0..LISTED).collect::<Vec<_>>().as_slice());
        assert_eq!(all.count(), 10 * LISTED as u64);
    }

    #[test]
    fn reports_add_up_within_the_bound() {
        let mut all = Listed::default();
        all.extend(vec![1, 2], 5);
        assert_eq!((all.items(), all.count()), (&[1, 2][..], 5));
        // A count below its list's length is the length.
        all.extend(vec![3, 4, 5], 1);
        assert_eq!(all.count(), 8);
        // However long a list, no more than LISTED are kept.
        all.extend((0..3 * LISTED).collect(), 0);
        assert_eq!(all.items().len(), LISTED);
        assert_eq!(all.count(), 8 + 3 * LISTED as u64);
        assert_eq!(all.unlisted(), all.count() - LISTED as u64);
        // A component's absurd count does not wrap.
        all.extend(vec![], u64::MAX);
        assert_eq!(all.count(), u64::MAX);
    }
}
