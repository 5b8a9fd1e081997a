//! A retry budget, as Linkerd and Envoy keep one: retries may add at most a fixed share to the
//! requests a server receives, so that a failing server is not hit harder because it fails.
//!
//! Every original request deposits `ratio` of a token; a retry withdraws a whole one. The
//! balance is capped, so a quiet period cannot save up an unbounded burst of retries.

use std::sync::Mutex;

#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    cap: f64,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    /// `ratio` is the largest share of retries (0.2: at most one retry per five requests, over
    /// time); `cap` bounds the balance and is also the starting balance.
    pub fn new(ratio: f64, cap: f64) -> Self {
        RetryBudget {
            ratio: ratio.max(0.0),
            cap: cap.max(0.0),
            tokens: Mutex::new(cap.max(0.0)),
        }
    }

    /// Records an original (not retried) request.
    pub fn deposit(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + self.ratio).min(self.cap);
        }
    }

    /// Takes one retry from the budget; false when there is none left.
    pub fn try_withdraw(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
    }

    pub fn balance(&self) -> f64 {
        self.tokens.lock().map(|t| *t).unwrap_or(0.0)
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(0.2, 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_ratio_over_time() {
        let budget = RetryBudget::new(0.2, 10.0);
        let mut retries = 0;
        let requests = 1000;
        for _ in 0..requests {
            budget.deposit();
            // A storm: every request would like to retry.
            if budget.try_withdraw() {
                retries += 1;
            }
        }
        // 20% of the requests plus at most the starting balance.
        assert!(retries <= requests / 5 + 10, "{retries}");
        assert!(retries >= requests / 5 - 1, "{retries}");
    }

    #[test]
    fn balance_is_capped() {
        let budget = RetryBudget::new(0.5, 3.0);
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.balance(), 3.0);
        assert!(budget.try_withdraw() && budget.try_withdraw() && budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }
}
