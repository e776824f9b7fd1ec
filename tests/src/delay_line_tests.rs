//! What the delay line guarantees: order, never early and due exactly on time, bounded memory,
//! and the same through real sockets (a Unix datagram socket pair stands in for the interfaces).

use std::os::unix::net::UnixDatagram;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn frame(n: u32, len: usize) -> Vec<u8> {
    let mut f = n.to_be_bytes().to_vec();
    f.resize(len.max(4), n as u8);
    f
}

/// Waits (at most 10 s) until `counter` reads `want`; panics with what it read otherwise.
fn wait_for_count(counter: &AtomicU64, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counter.load(Ordering::Relaxed);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "counter at {now}, want {want}");
        std::thread::sleep(MS);
    }
}

#[test]
fn frames_leave_in_arrival_order_exactly_when_due_never_early() {
    let t0 = Instant::now();
    let delay = 15 * MS;
    let mut q = DelayQueue::new(delay, 1 << 20);
    // Arrivals spread over 10 ms, some at the same instant.
    for n in 0..100u32 {
        assert!(q.push(t0 + MS * (n / 10), &frame(n, 60 + n as usize)));
    }
    assert_eq!(q.len(), 100);
    let mut next = 0u32;
    let mut now = t0;
    while now <= t0 + 40 * MS {
        while let Some(f) = q.pop_due(now) {
            let n = u32::from_be_bytes(f[..4].try_into().unwrap());
            assert_eq!(n, next, "FIFO order");
            let arrival = t0 + MS * (n / 10);
            assert!(now >= arrival + delay, "frame {n} left early");
            // Polled every 100 µs: it leaves in the first poll at or after its due time.
            assert!(now < arrival + delay + MS / 10, "frame {n} left late");
            assert_eq!(f, frame(n, 60 + n as usize), "content intact");
            q.recycle(f);
            next += 1;
        }
        now += MS / 10;
    }
    assert_eq!(next, 100);
    assert!(q.is_empty());
    assert_eq!(q.next_due(), None);
}

#[test]
fn a_clock_going_backwards_keeps_the_order() {
    let t0 = Instant::now() + Duration::from_secs(1);
    let mut q = DelayQueue::new(10 * MS, 1 << 20);
    q.push(t0, &frame(1, 60));
    q.push(t0 - 5 * MS, &frame(2, 60));
    assert_eq!(q.pop_due(t0 + 10 * MS).unwrap(), frame(1, 60));
    assert_eq!(q.pop_due(t0 + 10 * MS).unwrap(), frame(2, 60));
}

#[test]
fn memory_stays_within_the_budget_and_overflow_is_tail_dropped() {
    let budget = 10 * MAX_FRAME + 100;
    let t0 = Instant::now();
    let mut q = DelayQueue::new(50 * MS, budget);
    let mut accepted = 0;
    for n in 0..1000u32 {
        if q.push(t0, &frame(n, MAX_FRAME)) {
            accepted += 1;
        }
        assert!(q.held_bytes() <= budget);
    }
    assert_eq!(accepted, 10);
    assert_eq!(q.dropped(), 990);
    // The first ten are the ones kept (tail drop), and recycled buffers serve new frames.
    for n in 0..10u32 {
        let f = q.pop_due(t0 + 50 * MS).unwrap();
        assert_eq!(f[..4], n.to_be_bytes());
        q.recycle(f);
    }
    let held = q.held_bytes();
    for n in 0..10u32 {
        assert!(q.push(t0 + 60 * MS, &frame(n, 64)));
    }
    assert_eq!(q.held_bytes(), held, "no new buffers while spares exist");
    assert!(!q.push(t0, &[]));
    assert!(!q.push(t0, &vec![0; MAX_FRAME + 1]));
}

#[test]
fn forwards_through_sockets_in_order_never_early_with_bounded_queue() {
    let (a_near, a_far) = UnixDatagram::pair().unwrap();
    let (b_near, b_far) = UnixDatagram::pair().unwrap();
    let delay = 30 * MS;
    let line = DelayLine::start(
        OwnedFd::from(a_near),
        OwnedFd::from(b_near),
        delay,
        64 * MAX_FRAME,
    )
    .unwrap();
    b_far
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sent_at = Vec::new();
    for n in 0..20u32 {
        sent_at.push(Instant::now());
        a_far.send(&frame(n, 200)).unwrap();
    }
    let mut buf = [0u8; 2048];
    for (n, sent) in sent_at.iter().enumerate() {
        let len = b_far.recv(&mut buf).unwrap();
        assert!(sent.elapsed() >= delay, "frame {n} arrived early");
        assert_eq!(&buf[..len], &frame(n as u32, 200)[..], "in order, intact");
    }
    // The other direction works too.
    b_far.send(&frame(7, 100)).unwrap();
    a_far
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let len = a_far.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], &frame(7, 100)[..]);
    // The line counts a frame after its send returns, so the receiver may see it first.
    wait_for_count(&line.stats[0].forwarded, 20);
    wait_for_count(&line.stats[1].forwarded, 1);

    // A burst: every frame the line accepted is forwarded or counted as dropped (budget, socket),
    // and what arrives is in order.
    a_far.set_nonblocking(true).unwrap();
    let mut burst = 0u64;
    for n in 100..300u32 {
        if a_far.send(&frame(n, MAX_FRAME)).is_ok() {
            burst += 1;
        }
    }
    b_far
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let s = &line.stats[0];
    let accounted = || {
        s.forwarded.load(Ordering::Relaxed) - 20
            + s.dropped.load(Ordering::Relaxed)
            + s.send_errors.load(Ordering::Relaxed)
    };
    let (mut last, mut got) = (99u32, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Ok(len) = b_far.recv(&mut buf) {
            let n = u32::from_be_bytes(buf[..4].try_into().unwrap());
            assert!(n > last, "order kept: {n} after {last}");
            assert_eq!(len, MAX_FRAME);
            (last, got) = (n, got + 1);
        }
        if accounted() == burst {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {burst} frames accounted for",
            accounted()
        );
    }
    while b_far.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, s.forwarded.load(Ordering::Relaxed) - 20);
}
