//! The reconnect policy as a pure state machine: fed events and `now`, it says what to do next
//! and until when. No clock, no sockets: the engine's loop ([`super::run`]) performs each
//! [`Action`] and reports how it went; tests drive it in virtual time.
//!
//! ```text
//!            LoggedIn                       SessionLost{resumable}
//! Connecting ────────► Up ─────────────────────────────► Resuming ──LoggedIn──► Up
//!   ▲ ▲ │                │ SessionLost{!resumable}          │ ResumeFailed{unreachable}
//!   │ │ │LoginFailed     ▼                                  ▼
//!   │ │ └──────────► Waiting{until, probe} ◄────────────────┘
//!   │ └── ResumeFailed{answered: the session is gone, the server is up} ── Resuming
//!   │                  │      │ probe due → Probe → Probed{accepting}
//!   └── until reached ─┘      └ accepting after a refused probe or connect → Connecting
//! Never-class failure → Stopped
//! ```
//!
//! **Probing** (fast recovery): while the server refuses or is unreachable, the wait is not
//! slept out. Every ≤ [`PROBE_INTERVAL`] a cheap TCP connect (no TLS, no login) asks whether the
//! server listens again; once it accepts after having refused, the login starts at once. A probe
//! that the server accepts without a refusal first says nothing new (the server was up and still
//! failed us), so it ends probing for that wait: each accepted probe costs the server one
//! "no TLS" entry (`AddNoSsl`, 60 of them blacklist the client IP for 10 min), so at most one
//! accepted probe per wait. Busy / too-many-sessions answers (retry class Slow) wait their
//! minute without probing; errors that cannot succeed (class Never) stop.

use std::time::{Duration, Instant};

use softether_proto::error::RetryClass;

use super::backoff::{Backoff, DEFAULT_CAP};

/// Longest gap between two probes of a refusing or unreachable server.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Probes are spread over [`PROBE_INTERVAL`] × [0.6, 1.0] so many engines do not probe together.
const PROBE_JITTER_LOW: f64 = 0.6;
/// A session that stayed up this long resets the backoff to the base delay.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Tunables; [`Policy::new`] gives the defaults for a `--reconnect-delay` base.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Base of the exponential backoff.
    pub base: Duration,
    /// Ceiling of the backoff for ordinary failures.
    pub cap: Duration,
    /// Budget for one login (TCP, TLS, handshake, redirects, additional connections).
    pub login_budget: Duration,
    /// Whether refused / unreachable servers are probed during the wait.
    pub probe: bool,
    pub seed: u64,
}

impl Policy {
    pub fn new(base: Duration, login_budget: Duration, seed: u64) -> Self {
        Policy {
            base,
            cap: DEFAULT_CAP,
            login_budget,
            probe: true,
            seed,
        }
    }
}

/// Where the engine stands; every state that ends by time carries its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A full login is in flight; it must have ended by `deadline`.
    Connecting { deadline: Instant },
    /// The session carries traffic since `since`.
    Up { since: Instant },
    /// Rejoining the session with its key after its connections broke.
    Resuming { deadline: Instant },
    /// Backing off until `until`; with `probe`, the server is probed meanwhile.
    Waiting {
        until: Instant,
        probe: Option<Probe>,
    },
    /// No more attempts: a failure that retrying cannot fix.
    Stopped,
}

/// The probing sub-state of [`State::Waiting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// When the next probe is due.
    pub at: Instant,
    /// Whether the server was seen refusing or unreachable during this wait (or by the failure
    /// that started it): an accepting probe after that means it came back.
    pub seen_down: bool,
}

/// What happened, as the engine's loop reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A login or resume succeeded: the session is up.
    Connected,
    /// A login failed. `unreachable`: the TCP connect itself failed (refused, unreachable, timed
    /// out) — the server is down, not merely refusing us.
    LoginFailed {
        class: RetryClass,
        unreachable: bool,
    },
    /// The session ended. `resumable`: its connection broke (the server may still hold the
    /// session), as opposed to a silent server (timeout) or a clean close.
    SessionLost { resumable: bool },
    /// Resuming failed; `unreachable` as for [`Event::LoginFailed`].
    ResumeFailed { unreachable: bool },
    /// A probe finished: whether the server accepted the TCP connection.
    Probed { accepting: bool },
}

/// What the loop must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Log in (give up at `deadline`), then report [`Event::Connected`] or
    /// [`Event::LoginFailed`].
    Login { deadline: Instant },
    /// Resume the session (give up at `deadline`), then report [`Event::Connected`] or
    /// [`Event::ResumeFailed`].
    Resume { deadline: Instant },
    /// Run the session until it ends, then report [`Event::SessionLost`].
    RunSession,
    /// Probe the server with a TCP connect, then report [`Event::Probed`].
    Probe,
    /// Sleep until `until`, then call [`Reconnect::handle_timeout`]. `delay` is the backoff
    /// chosen when the wait began (for status and logs), `None` when continuing a wait.
    Wait {
        until: Instant,
        delay: Option<Duration>,
    },
    /// Give up: the last failure cannot be fixed by retrying.
    Stop,
}

/// The machine. Start with [`Reconnect::start`]; after each [`Action`] feed the matching
/// [`Event`] to [`Reconnect::handle`]; after a [`Action::Wait`] call
/// [`Reconnect::handle_timeout`].
#[derive(Debug)]
pub struct Reconnect {
    policy: Policy,
    backoff: Backoff,
    state: State,
    /// Logins started because a probe saw the server come back.
    probe_logins: u32,
}

impl Reconnect {
    pub fn new(policy: Policy) -> Self {
        let backoff = Backoff::new(policy.base, policy.cap, policy.seed);
        Reconnect {
            policy,
            backoff,
            state: State::Stopped,
            probe_logins: 0,
        }
    }

    /// The first action: log in.
    pub fn start(&mut self, now: Instant) -> Action {
        self.login(now)
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// How many failures since the backoff was last reset.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    /// How many logins a probe started early (the server came back during a wait).
    pub fn probe_logins(&self) -> u32 {
        self.probe_logins
    }

    /// The next deadline of the current state, if it has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { deadline } | State::Resuming { deadline } => Some(deadline),
            State::Waiting { until, probe } => Some(probe.map_or(until, |p| p.at.min(until))),
            State::Up { .. } | State::Stopped => None,
        }
    }

    fn login(&mut self, now: Instant) -> Action {
        let deadline = now + self.policy.login_budget;
        self.state = State::Connecting { deadline };
        Action::Login { deadline }
    }

    fn wait(&mut self, now: Instant, class: RetryClass, unreachable: bool) -> Action {
        let Some(delay) = self.backoff.next_delay(class) else {
            self.state = State::Stopped;
            return Action::Stop;
        };
        let until = now + delay;
        let probe = (self.policy.probe && class == RetryClass::Normal).then(|| Probe {
            at: self.next_probe(now).min(until),
            seen_down: unreachable,
        });
        self.state = State::Waiting { until, probe };
        Action::Wait {
            until: probe.map_or(until, |p| p.at),
            delay: Some(delay),
        }
    }

    fn next_probe(&mut self, now: Instant) -> Instant {
        now + self
            .backoff
            .jitter(PROBE_INTERVAL.mul_f64(PROBE_JITTER_LOW), PROBE_INTERVAL)
    }

    /// Feeds the outcome of the last action.
    pub fn handle(&mut self, now: Instant, event: Event) -> Action {
        match (self.state, event) {
            (State::Connecting { .. } | State::Resuming { .. }, Event::Connected) => {
                self.state = State::Up { since: now };
                Action::RunSession
            }
            (State::Connecting { .. }, Event::LoginFailed { class, unreachable }) => {
                self.wait(now, class, unreachable)
            }
            (State::Up { since }, Event::SessionLost { resumable }) => {
                if now.saturating_duration_since(since) >= HEALTHY_SESSION {
                    self.backoff.reset();
                }
                if resumable {
                    let deadline = now + self.policy.login_budget;
                    self.state = State::Resuming { deadline };
                    Action::Resume { deadline }
                } else {
                    self.wait(now, RetryClass::Normal, false)
                }
            }
            // The server answered but no longer holds the session (it restarted, or the
            // session timed out): it is up, so log in at once rather than back off.
            (State::Resuming { .. }, Event::ResumeFailed { unreachable: false }) => self.login(now),
            (State::Resuming { .. }, Event::ResumeFailed { unreachable: true }) => {
                self.wait(now, RetryClass::Normal, true)
            }
            (
                State::Waiting {
                    until,
                    probe: Some(probe),
                },
                Event::Probed { accepting },
            ) => {
                if accepting && probe.seen_down {
                    self.probe_logins += 1;
                    return self.login(now);
                }
                // Accepted without a refusal first: nothing new; stop probing this wait. The
                // next probe is due an interval after this one started (`probe.at`), so a probe
                // that timed out against an unreachable server is followed at once.
                let probe = (!accepting).then(|| Probe {
                    at: self.next_probe(probe.at).max(now).min(until),
                    seen_down: true,
                });
                self.state = State::Waiting { until, probe };
                self.resume_wait(now)
            }
            (State::Stopped, _) => Action::Stop,
            // An event that does not fit the state (a bug in the loop): the safe reading is
            // "that attempt failed", which backs off instead of spinning.
            (_, _) => self.wait(now, RetryClass::Normal, false),
        }
    }

    /// Called when the deadline of an [`Action::Wait`] (or a login/resume budget) passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Action {
        match self.state {
            State::Waiting { until, .. } if now >= until => self.login(now),
            State::Waiting {
                probe: Some(probe), ..
            } if now >= probe.at => Action::Probe,
            State::Waiting { .. } => self.resume_wait(now),
            State::Connecting { deadline } if now >= deadline => {
                self.wait(now, RetryClass::Normal, false)
            }
            State::Resuming { deadline } if now >= deadline => {
                self.wait(now, RetryClass::Normal, false)
            }
            State::Connecting { deadline } => Action::Login { deadline },
            State::Resuming { deadline } => Action::Resume { deadline },
            State::Up { .. } => Action::RunSession,
            State::Stopped => Action::Stop,
        }
    }

    /// The wait continues: sleep to the next probe or the end.
    fn resume_wait(&self, now: Instant) -> Action {
        let until = self.poll_timeout().unwrap_or(now);
        Action::Wait { until, delay: None }
    }
}

#[cfg(test)]
#[path = "reconnect_tests.rs"]
mod tests;
