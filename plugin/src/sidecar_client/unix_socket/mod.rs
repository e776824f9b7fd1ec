//! [`SidecarClient`] over the sidecar's Unix socket.
//!
//! One connection per call: the request line (for `attach` with the TAP fd
//! on the same `sendmsg`, SCM_RIGHTS), then one reply line. The framing is
//! `softether_control`'s; this file adds the socket, the deadline and the
//! mapping of the sidecar's error codes to [`CniError`]. Payloads: attach →
//! [`AttachResult`], status → [`SidecarStatus`], gc → [`GcReport`],
//! detach/check → anything (ignored).

use std::io::{BufRead, BufReader, ErrorKind, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde_json::Value;
use softether_control::{
    parse_reply, request_limit, request_line, NoPayload, ReplyError, Request, MAX_REPLY_BYTES,
};

use super::{
    AttachRequest, AttachResult, CheckRequest, DetachRequest, GcReport, GcRequest, SidecarClient,
    SidecarError, SidecarStatus,
};
use crate::spec::{CniError, ErrorCode};

/// Talks to the sidecar listening on `path`.
#[derive(Debug, Clone)]
pub struct UnixSidecarClient {
    path: PathBuf,
}

impl UnixSidecarClient {
    pub fn new(path: impl Into<PathBuf>) -> UnixSidecarClient {
        UnixSidecarClient { path: path.into() }
    }

    fn io_error(&self, started: Instant, e: std::io::Error) -> SidecarError {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => SidecarError::Timeout {
                path: self.path.clone(),
                waited: started.elapsed(),
            },
            _ => SidecarError::Io {
                path: self.path.clone(),
                source: e,
            },
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> SidecarError {
        SidecarError::Protocol {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// One request/reply exchange, bounded by `deadline`.
    fn call<T: DeserializeOwned>(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<T, SidecarError> {
        self.call_with_fd(request, None, deadline)
    }

    /// [`Self::call`], passing `fd` with the request line.
    fn call_with_fd<T: DeserializeOwned>(
        &self,
        request: &Request,
        fd: Option<BorrowedFd<'_>>,
        deadline: Instant,
    ) -> Result<T, SidecarError> {
        let started = Instant::now();
        let op = request.op();
        let line = request_line(request)
            .map_err(|e| self.protocol(format!("cannot encode the {op} request: {e}")))?;
        // The sidecar refuses a longer line, and would do so while we are still writing it.
        let limit = request_limit(&line);
        if line.len() > limit {
            return Err(SidecarError::TooLarge {
                op,
                bytes: line.len(),
                limit,
            });
        }
        let stream =
            UnixStream::connect(&self.path).map_err(|source| SidecarError::Unreachable {
                path: self.path.clone(),
                source,
            })?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(SidecarError::Timeout {
                path: self.path.clone(),
                waited: started.elapsed(),
            });
        }
        stream
            .set_read_timeout(Some(remaining))
            .and_then(|()| stream.set_write_timeout(Some(remaining)))
            .map_err(|e| self.io_error(started, e))?;
        let mut sent = 0;
        if let Some(fd) = fd {
            let fds = [fd.as_raw_fd()];
            sent = nix::sys::socket::sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(&line)],
                &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(|e| self.io_error(started, e.into()))?;
        }
        (&stream)
            .write_all(line.get(sent..).unwrap_or_default())
            .map_err(|e| self.io_error(started, e))?;
        (&stream).flush().map_err(|e| self.io_error(started, e))?;

        let mut reply = String::new();
        BufReader::new((&stream).take(MAX_REPLY_BYTES))
            .read_line(&mut reply)
            .map_err(|e| self.io_error(started, e))?;
        match parse_reply::<T>(&reply) {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(err)) => match ErrorCode::from_u32(err.code) {
                Some(code) => Err(SidecarError::Refused(CniError::new(
                    code,
                    err.msg,
                    err.details,
                ))),
                None => Err(self.protocol(format!(
                    "unknown error code {} (msg {:?}, details {:?})",
                    err.code, err.msg, err.details
                ))),
            },
            Err(ReplyError::Empty) => {
                Err(self.protocol(format!("connection closed without a reply to {op}")))
            }
            Err(ReplyError::Payload(e)) => Err(self.protocol(format!("bad {op} payload: {e}"))),
            Err(e) => Err(self.protocol(format!("bad reply to {op}: {e}"))),
        }
    }
}

impl SidecarClient for UnixSidecarClient {
    fn attach(
        &mut self,
        req: &AttachRequest,
        tap: BorrowedFd<'_>,
        deadline: Instant,
    ) -> Result<AttachResult, SidecarError> {
        self.call_with_fd(&Request::Attach(Box::new(req.clone())), Some(tap), deadline)
    }

    fn detach(&mut self, req: &DetachRequest, deadline: Instant) -> Result<(), SidecarError> {
        self.call::<Value>(&Request::Detach(req.clone()), deadline)
            .map(drop)
    }

    fn check(&mut self, req: &CheckRequest, deadline: Instant) -> Result<(), SidecarError> {
        self.call::<Value>(&Request::Check(req.clone()), deadline)
            .map(drop)
    }

    fn status(&mut self, deadline: Instant) -> Result<SidecarStatus, SidecarError> {
        self.call(&Request::Status(NoPayload), deadline)
    }

    fn gc(&mut self, req: &GcRequest, deadline: Instant) -> Result<GcReport, SidecarError> {
        self.call(&Request::Gc(req.clone()), deadline)
    }
}

#[cfg(test)]
mod tests;
