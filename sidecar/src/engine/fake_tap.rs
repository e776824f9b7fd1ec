//! A channel-backed [`FramePort`] for the in-process engine tests: the "pod" side sends and
//! receives frames through bounded channels, so a pod that stops reading back-pressures the
//! bridge exactly where a full TAP queue would.

use std::io;

use bytes::Bytes;
use netcfg::TapOffload;
use tokio::sync::{mpsc, Mutex};

use super::bridge::FramePort;

/// The engine's side.
pub struct FakeTap {
    from_pod: Mutex<mpsc::Receiver<Bytes>>,
    /// A frame `readable` took off the channel, for the next `try_recv`.
    peeked: std::sync::Mutex<Option<Bytes>>,
    to_pod: mpsc::Sender<Bytes>,
    /// With a header mode, the pod sends and receives frames behind a `virtio_net_hdr`, like
    /// the kernel on an offload TAP.
    offload: TapOffload,
}

/// The pod's side: what it sends goes to the tunnel, what the tunnel delivers arrives here.
pub struct Pod {
    pub send: mpsc::Sender<Bytes>,
    pub recv: mpsc::Receiver<Bytes>,
}

/// A fake TAP whose pod side holds at most `depth` undelivered frames each way.
pub fn fake_tap(depth: usize) -> (FakeTap, Pod) {
    fake_tap_with(depth, TapOffload::Plain)
}

/// [`fake_tap`] whose frames cross in `offload` mode.
pub fn fake_tap_with(depth: usize, offload: TapOffload) -> (FakeTap, Pod) {
    let (pod_tx, from_pod) = mpsc::channel(depth);
    let (to_pod, pod_rx) = mpsc::channel(depth);
    (
        FakeTap {
            from_pod: Mutex::new(from_pod),
            peeked: std::sync::Mutex::new(None),
            to_pod,
            offload,
        },
        Pod {
            send: pod_tx,
            recv: pod_rx,
        },
    )
}

fn copy(frame: Bytes, buf: &mut [u8]) -> usize {
    let n = frame.len().min(buf.len());
    buf[..n].copy_from_slice(&frame[..n]);
    n
}

fn gone() -> io::Error {
    io::Error::other("the pod side of the fake TAP is gone")
}

impl FramePort for FakeTap {
    async fn readable(&self) -> io::Result<()> {
        let mut rx = self.from_pod.lock().await;
        if self.peeked.lock().map_err(|_| gone())?.is_some() {
            return Ok(());
        }
        let frame = rx.recv().await.ok_or_else(gone)?;
        *self.peeked.lock().map_err(|_| gone())? = Some(frame);
        Ok(())
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(frame) = self.peeked.lock().map_err(|_| gone())?.take() {
            return Ok(copy(frame, buf));
        }
        let mut rx = self
            .from_pod
            .try_lock()
            .map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))?;
        match rx.try_recv() {
            Ok(frame) => Ok(copy(frame, buf)),
            Err(mpsc::error::TryRecvError::Empty) => Err(io::ErrorKind::WouldBlock.into()),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(gone()),
        }
    }

    async fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.to_pod
            .send(Bytes::copy_from_slice(frame))
            .await
            .map_err(|_| gone())
    }

    fn offload(&self) -> TapOffload {
        self.offload
    }
}
