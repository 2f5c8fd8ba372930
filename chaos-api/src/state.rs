//! [`State`]: where an experiment is in its life, the one typed state the daemon records,
//! sends and the CLI shows.

use std::fmt;

use crate::proto;

/// Where an experiment is. Every state but [`State::Running`] is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Armed: its faults may inject.
    Running,
    /// Its duration elapsed, or it had nothing more to do (a one-shot kill that ran).
    Completed,
    /// Stopped by a caller.
    Stopped,
    /// Disarmed by an emergency stop.
    EmergencyStopped,
    /// It was running when the daemon died; its kernel faults died with the daemon.
    Aborted,
    /// Stopping it failed part-way (the reason says what); its faults were disarmed first.
    Failed,
    /// A guard saw a violation (an SLO, a health check, a rollback trigger, the impact score,
    /// an unavailable guard) and disarmed it; the reason names the guard.
    RolledBack,
}

impl State {
    /// Every state.
    pub const ALL: [Self; 7] = [
        Self::Running,
        Self::Completed,
        Self::Stopped,
        Self::EmergencyStopped,
        Self::Aborted,
        Self::Failed,
        Self::RolledBack,
    ];

    /// The name users read and the store keeps, e.g. `emergency_stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Stopped => "stopped",
            Self::EmergencyStopped => "emergency_stopped",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    /// The state named `name` ([`State::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the experiment has ended.
    pub fn is_final(self) -> bool {
        self != Self::Running
    }

    /// The proto's enum value.
    pub fn to_proto(self) -> proto::State {
        match self {
            Self::Running => proto::State::Running,
            Self::Completed => proto::State::Completed,
            Self::Stopped => proto::State::Stopped,
            Self::EmergencyStopped => proto::State::EmergencyStopped,
            Self::Aborted => proto::State::Aborted,
            Self::Failed => proto::State::Failed,
            Self::RolledBack => proto::State::RolledBack,
        }
    }

    /// The state of a proto enum value; `None` for an unspecified or unknown one.
    pub fn from_proto(value: i32) -> Option<Self> {
        Some(match proto::State::try_from(value).ok()? {
            proto::State::Unspecified => return None,
            proto::State::Running => Self::Running,
            proto::State::Completed => Self::Completed,
            proto::State::Stopped => Self::Stopped,
            proto::State::EmergencyStopped => Self::EmergencyStopped,
            proto::State::Aborted => Self::Aborted,
            proto::State::Failed => Self::Failed,
            proto::State::RolledBack => Self::RolledBack,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_proto_values_round_trip() {
        for state in State::ALL {
            assert_eq!(State::from_name(state.as_str()), Some(state));
            assert_eq!(State::from_proto(state.to_proto() as i32), Some(state));
        }
        assert_eq!(State::from_proto(0), None);
        assert_eq!(State::from_name("socket_error"), None);
    }
}
