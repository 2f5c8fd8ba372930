//! The daily budget: money reserved by running experiments and spent by finished ones today
//! (UTC), against `budget.max_daily_cost` (docs/adr/0005). Kept in memory (loaded from the
//! store at start) so that a start checks it without touching the store; never held across
//! I/O.

/// The day's books.
#[derive(Debug)]
pub struct Ledger {
    max_daily: f64,
    /// The UTC day (`unix ms / DAY_MS`) `spent` belongs to.
    day: u64,
    spent: f64,
    reserved: f64,
}

/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// A start that today's budget cannot cover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exhausted {
    pub requested: f64,
    pub remaining: f64,
}

impl Ledger {
    /// Books with `spent` already spent on the day of `now_ms`.
    pub fn new(max_daily: f64, now_ms: u64, spent: f64) -> Self {
        Self {
            max_daily,
            day: now_ms / DAY_MS,
            spent,
            reserved: 0.0,
        }
    }

    fn roll(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            self.day = day;
            self.spent = 0.0;
        }
    }

    /// What finished experiments spent today.
    pub fn spent(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        self.spent
    }

    /// What is left today: the daily budget minus spent and reserved.
    pub fn remaining(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        (self.max_daily - self.spent - self.reserved).max(0.0)
    }

    /// Reserves `amount` for a starting experiment, or says how much is left.
    pub fn reserve(&mut self, amount: f64, now_ms: u64) -> Result<(), Exhausted> {
        let remaining = self.remaining(now_ms);
        if amount > remaining {
            return Err(Exhausted {
                requested: amount,
                remaining,
            });
        }
        self.reserved += amount;
        Ok(())
    }

    /// Gives back a reservation of `amount`, of which `spent` was spent (counted on today's
    /// books).
    pub fn settle(&mut self, amount: f64, spent: f64, now_ms: u64) {
        self.roll(now_ms);
        self.reserved = (self.reserved - amount).max(0.0);
        self.spent += spent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_and_spend_count_against_the_day() {
        let day = 20_000 * DAY_MS;
        let mut l = Ledger::new(10.0, day, 2.0);
        assert_eq!(l.remaining(day), 8.0);
        l.reserve(5.0, day).unwrap();
        assert_eq!(
            l.reserve(4.0, day),
            Err(Exhausted {
                requested: 4.0,
                remaining: 3.0
            })
        );
        l.settle(5.0, 1.5, day + 1);
        assert_eq!(l.remaining(day + 2), 6.5);
        // A new UTC day starts with nothing spent; reservations carry over.
        l.reserve(1.0, day + 3).unwrap();
        assert_eq!(l.remaining(day + DAY_MS), 9.0);
    }
}
