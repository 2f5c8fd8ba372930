//! What an experiment may cost and what it may do under the daemon's config: the budget
//! reservation that becomes the kernel fault cap (ADR 0005), per-kind prices (per request, per
//! killed pod, per minute of latency), and the config's limits and defaults.

use std::time::Duration;

use super::{DAY_MS, ExperimentError, Inner, Manager, now_ms};
use crate::{
    fault::{Fault, FaultSpec},
    store::ExperimentRow,
};

impl Manager {
    /// Checks the budget against the limits and today's spend, and turns it into the kernel's
    /// fault cap: `floor(budget / cost_per_request)`, so the budget cannot be overshot by even
    /// one fault. Returns the capped spec and the reserved budget.
    pub(super) fn budgeted(
        &self,
        inner: &Inner,
        spec: &FaultSpec,
        budget: Option<f64>,
    ) -> Result<(FaultSpec, f64), ExperimentError> {
        let spec = &self.with_config(spec)?;
        let b = &self.budget;
        let requested = budget.unwrap_or(b.max_experiment_cost);
        if !(requested.is_finite() && (0.0..=b.max_experiment_cost).contains(&requested)) {
            return Err(ExperimentError::BudgetInvalid {
                requested,
                max: b.max_experiment_cost,
            });
        }
        let now = now_ms();
        let reserved: f64 = inner.running.values().map(|r| r.row.budget).sum();
        let remaining = b.max_daily_cost - inner.store.spent_since(now - now % DAY_MS)? - reserved;
        let cost = self.cost_of(spec.fault.kind());
        let mut cap = if cost > 0.0 {
            (requested / cost).floor() as u64
        } else {
            u64::MAX
        };
        match spec.fault {
            Fault::PodKill { .. } => {
                cap = cap.min(u64::from(self.limits.pod_deletion.max_pods_deleted));
            }
            // Priced by time, not per packet: the whole duration must fit the budget up front.
            Fault::Latency { .. } => {
                let needed = self.time_cost(spec.duration);
                if needed > requested {
                    return Err(ExperimentError::BudgetTooSmall {
                        needed,
                        budget: requested,
                    });
                }
                cap = u64::MAX;
            }
            _ => {}
        }
        if requested > remaining || cap == 0 {
            return Err(ExperimentError::BudgetExhausted {
                requested,
                remaining: remaining.max(0.0),
            });
        }
        let mut spec = spec.clone();
        spec.max_faults = Some(spec.max_faults.map_or(cap, |m| m.min(cap)));
        Ok((spec, requested))
    }

    /// Applies the daemon's config to a request: refuses disabled types and fills the
    /// resource pressure shares the request left out.
    fn with_config(&self, spec: &FaultSpec) -> Result<FaultSpec, ExperimentError> {
        let l = &self.limits;
        let mut spec = spec.clone();
        match &mut spec.fault {
            Fault::Latency { .. } if !l.network_latency.enabled => {
                return Err(ExperimentError::Disabled(
                    "experiments.network_latency.enabled",
                ));
            }
            Fault::Latency { delay, jitter, .. }
                if (*delay + *jitter).as_millis()
                    > u128::from(l.network_latency.max_latency_ms) =>
            {
                return Err(ExperimentError::LatencyTooHigh {
                    requested_ms: (*delay + *jitter).as_millis(),
                    max_ms: l.network_latency.max_latency_ms,
                });
            }
            Fault::PodKill { .. } if !l.pod_deletion.enabled => {
                return Err(ExperimentError::Disabled(
                    "experiments.pod_deletion.enabled",
                ));
            }
            Fault::ResourcePressure { .. } if !l.resource_exhaustion.enabled => {
                return Err(ExperimentError::Disabled(
                    "experiments.resource_exhaustion.enabled",
                ));
            }
            Fault::ResourcePressure {
                cpu_share,
                memory_share,
            } if cpu_share.is_none() && memory_share.is_none() => {
                *cpu_share = Some(l.resource_exhaustion.max_cpu_usage);
                *memory_share = Some(l.resource_exhaustion.max_memory_usage);
            }
            _ => {}
        }
        Ok(spec)
    }

    /// What one fault of this kind costs: a killed pod `cost_per_pod`, anything else
    /// `cost_per_request`.
    fn cost_of(&self, kind: &str) -> f64 {
        match kind {
            "pod_kill" => self.limits.pod_deletion.cost_per_pod,
            _ => self.budget.cost_per_request,
        }
    }

    /// What a latency fault costs for `d`: `experiments.network_latency.cost_per_minute`.
    fn time_cost(&self, d: Duration) -> f64 {
        self.limits.network_latency.cost_per_minute * d.as_secs_f64() / 60.0
    }

    /// Money spent by an experiment so far: per fault injected, or per minute for latency.
    pub(super) fn spent(&self, row: &ExperimentRow, now_ms: u64) -> f64 {
        if row.fault == "latency" {
            self.time_cost(Duration::from_millis(now_ms.saturating_sub(row.started_ms)))
                .min(row.budget)
        } else {
            row.injected as f64 * self.cost_of(&row.fault)
        }
    }
}
