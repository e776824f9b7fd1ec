//! The reconnect machine in virtual time: a fake clock, no I/O.

use super::*;
use crate::engine::backoff::SLOW_FLOOR;

const MS: fn(u64) -> Duration = Duration::from_millis;
const S: fn(u64) -> Duration = Duration::from_secs;

fn machine(base: Duration, seed: u64) -> (Reconnect, Instant) {
    let now = Instant::now();
    let mut m = Reconnect::new(Policy::new(base, S(20), seed));
    assert!(matches!(m.start(now), Action::Login { .. }));
    (m, now)
}

const REFUSED: Event = Event::LoginFailed {
    class: RetryClass::Normal,
    unreachable: true,
};

/// Follows `Wait`/`Probe` actions with the server answering probes by `accepting(now)` until
/// the machine asks for something else; returns that action and when.
fn run_waits(
    m: &mut Reconnect,
    mut now: Instant,
    mut action: Action,
    accepting: impl Fn(Instant) -> bool,
) -> (Action, Instant, u32) {
    let mut probes = 0;
    for _ in 0..10_000 {
        action = match action {
            Action::Wait { until, .. } => {
                assert!(until >= now, "a deadline in the past");
                assert_eq!(m.poll_timeout(), Some(until));
                now = until;
                m.handle_timeout(now)
            }
            Action::Probe => {
                probes += 1;
                m.handle(
                    now,
                    Event::Probed {
                        accepting: accepting(now),
                    },
                )
            }
            other => return (other, now, probes),
        };
    }
    panic!("the machine never left its wait");
}

#[test]
fn login_then_up_then_broken_connection_resumes_at_once() {
    let (mut m, now) = machine(S(5), 1);
    assert_eq!(m.handle(now, Event::Connected), Action::RunSession);
    assert_eq!(m.state(), State::Up { since: now });
    assert_eq!(m.poll_timeout(), None);
    let later = now + S(3);
    let a = m.handle(later, Event::SessionLost { resumable: true });
    assert_eq!(
        a,
        Action::Resume {
            deadline: later + S(20)
        }
    );
    assert_eq!(
        m.handle(later + MS(50), Event::Connected),
        Action::RunSession
    );
}

#[test]
fn refused_server_is_probed_and_logged_into_as_soon_as_it_listens() {
    for outage in [S(3), S(10), S(40), S(300)] {
        let (mut m, start) = machine(S(5), 7);
        let back = start + outage;
        let mut now = start;
        let mut action = m.handle(now, REFUSED);
        // Every login attempt before the server is back is refused at TCP level.
        loop {
            let (next, at, _) = run_waits(&mut m, now, action, |t| t >= back);
            now = at;
            assert!(matches!(next, Action::Login { .. }), "{next:?}");
            if now >= back {
                break;
            }
            action = m.handle(now, REFUSED);
        }
        let late = now - back;
        assert!(
            late <= PROBE_INTERVAL,
            "outage {outage:?}: login {late:?} after the server returned"
        );
    }
}

#[test]
fn probes_come_at_most_every_half_second_and_are_jittered() {
    let (mut m, now) = machine(S(60), 3);
    let mut action = m.handle(now, REFUSED);
    let mut last = now;
    let mut gaps = Vec::new();
    for _ in 0..40 {
        let Action::Wait { until, .. } = action else {
            panic!("{action:?}")
        };
        gaps.push(until - last);
        last = until;
        action = m.handle_timeout(until);
        if action == Action::Probe {
            action = m.handle(until, Event::Probed { accepting: false });
        }
    }
    assert!(
        gaps.iter().all(|g| *g <= PROBE_INTERVAL && *g >= MS(300)),
        "{gaps:?}"
    );
    gaps.sort();
    gaps.dedup();
    assert!(gaps.len() > 5, "probe times are not jittered: {gaps:?}");
}

#[test]
fn an_accepting_first_probe_ends_probing_and_the_backoff_is_slept_out() {
    // A login refused by the server itself (not at TCP level): the server is up, probing it
    // would only add "no TLS" entries on it.
    let (mut m, now) = machine(S(8), 5);
    let a = m.handle(
        now,
        Event::LoginFailed {
            class: RetryClass::Normal,
            unreachable: false,
        },
    );
    let Action::Wait {
        delay: Some(delay), ..
    } = a
    else {
        panic!("{a:?}")
    };
    let (next, at, probes) = run_waits(&mut m, now, a, |_| true);
    assert!(matches!(next, Action::Login { .. }));
    assert_eq!(at, now + delay, "the whole backoff is waited");
    assert_eq!(probes, 1, "one accepted probe per wait at most");
}

#[test]
fn busy_server_waits_a_minute_without_probing_and_never_class_stops() {
    let (mut m, now) = machine(S(1), 9);
    let a = m.handle(
        now,
        Event::LoginFailed {
            class: RetryClass::Slow,
            unreachable: false,
        },
    );
    let (next, at, probes) = run_waits(&mut m, now, a, |_| true);
    assert!(matches!(next, Action::Login { .. }));
    assert!(at - now >= SLOW_FLOOR, "{:?}", at - now);
    assert_eq!(probes, 0);
    let a = m.handle(
        at,
        Event::LoginFailed {
            class: RetryClass::Never,
            unreachable: false,
        },
    );
    assert_eq!(a, Action::Stop);
    assert_eq!(m.state(), State::Stopped);
    assert_eq!(m.handle(at, Event::Connected), Action::Stop);
}

#[test]
fn backoff_grows_per_failure_and_resets_after_a_healthy_session() {
    let (mut m, now) = machine(S(1), 11);
    let mut m_noprobe = Reconnect::new(Policy {
        probe: false,
        ..Policy::new(S(1), S(20), 11)
    });
    m_noprobe.start(now);
    let mut delays = Vec::new();
    let mut t = now;
    for _ in 0..8 {
        let a = m_noprobe.handle(t, REFUSED);
        let Action::Wait {
            until,
            delay: Some(d),
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(until, t + d, "without probing the wait is one sleep");
        delays.push(d);
        t = until;
        assert!(matches!(m_noprobe.handle_timeout(t), Action::Login { .. }));
    }
    assert!(delays[5] > delays[0] * 8, "{delays:?}");
    assert!(delays.iter().all(|d| *d <= DEFAULT_CAP));

    // A session shorter than HEALTHY_SESSION keeps the count, a longer one resets it.
    m.handle(now, Event::Connected);
    m.handle(now + S(1), Event::SessionLost { resumable: false });
    assert_eq!(m.attempts(), 1);
    let a = m.handle_timeout(now + S(1));
    let (a, t, _) = run_waits(&mut m, now + S(1), a, |_| true);
    assert!(matches!(a, Action::Login { .. }));
    m.handle(t, Event::Connected);
    m.handle(t + HEALTHY_SESSION, Event::SessionLost { resumable: false });
    assert_eq!(m.attempts(), 1, "reset, then this loss counted");
}

#[test]
fn silent_server_is_not_resumed_and_probing_finds_it_after_a_blackhole() {
    let (mut m, now) = machine(S(30), 13);
    m.handle(now, Event::Connected);
    let lost = now + S(100);
    let a = m.handle(lost, Event::SessionLost { resumable: false });
    assert!(matches!(a, Action::Wait { .. }), "{a:?}");
    // Unreachable for 12 s (probes time out), then reachable.
    let back = lost + S(12);
    let (next, at, probes) = run_waits(&mut m, lost, a, |t| t >= back);
    assert!(matches!(next, Action::Login { .. }));
    assert!(at >= back && at - back <= PROBE_INTERVAL, "{:?}", at - back);
    assert!(probes >= 20, "{probes}");
    assert_eq!(m.probe_logins(), 1);
}

#[test]
fn failed_resume_of_a_restarting_server_probes_until_it_listens() {
    let (mut m, now) = machine(S(5), 17);
    m.handle(now, Event::Connected);
    let lost = now + S(2);
    assert!(matches!(
        m.handle(lost, Event::SessionLost { resumable: true }),
        Action::Resume { .. }
    ));
    let a = m.handle(lost, Event::ResumeFailed { unreachable: true });
    let back = lost + S(40);
    let (next, at, _) = run_waits(&mut m, lost, a, |t| t >= back);
    assert!(matches!(next, Action::Login { .. }));
    // The 5 s backoff ran out long before: logins at the backoff schedule are refused, and
    // each refusal starts probing again.
    let mut now = at;
    let mut next = next;
    while now < back {
        let a = m.handle(now, REFUSED);
        let (n, t, _) = run_waits(&mut m, now, a, |t| t >= back);
        next = n;
        now = t;
    }
    assert!(matches!(next, Action::Login { .. }));
    assert!(now - back <= PROBE_INTERVAL, "{:?}", now - back);
}

#[test]
fn login_and_resume_budgets_are_deadlines() {
    let (mut m, now) = machine(S(2), 19);
    assert_eq!(m.poll_timeout(), Some(now + S(20)));
    assert!(matches!(m.handle_timeout(now + S(1)), Action::Login { .. }));
    let a = m.handle_timeout(now + S(20));
    assert!(matches!(a, Action::Wait { .. }), "{a:?}");
    // An event that does not fit the state backs off rather than spinning.
    let (_, t, _) = run_waits(&mut m, now + S(20), a, |_| false);
    let a = m.handle(t, Event::Probed { accepting: true });
    assert!(matches!(a, Action::Wait { .. }), "{a:?}");
}

#[test]
fn a_session_the_server_no_longer_holds_is_logged_into_again_at_once() {
    let (mut m, now) = machine(S(5), 23);
    m.handle(now, Event::Connected);
    let lost = now + S(60);
    assert!(matches!(
        m.handle(lost, Event::SessionLost { resumable: true }),
        Action::Resume { .. }
    ));
    let a = m.handle(lost + MS(20), Event::ResumeFailed { unreachable: false });
    assert_eq!(
        a,
        Action::Login {
            deadline: lost + MS(20) + S(20)
        }
    );
    // That login failing backs off as usual.
    let a = m.handle(
        lost + MS(40),
        Event::LoginFailed {
            class: RetryClass::Normal,
            unreachable: false,
        },
    );
    assert!(matches!(a, Action::Wait { delay: Some(_), .. }), "{a:?}");
}

#[test]
fn probes_that_time_out_are_followed_at_once() {
    // A blackholed server: every probe takes its whole timeout.
    let (mut m, now) = machine(S(60), 29);
    let mut action = m.handle(now, REFUSED);
    let mut starts = Vec::new();
    let mut t = now;
    while starts.len() < 10 {
        action = match action {
            Action::Wait { until, .. } => {
                t = until;
                m.handle_timeout(t)
            }
            Action::Probe => {
                starts.push(t);
                t += MS(500);
                m.handle(t, Event::Probed { accepting: false })
            }
            other => panic!("{other:?}"),
        };
    }
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g == MS(500)), "{gaps:?}");
}
