//! A scripted `SidecarClient` for command tests.

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use crate::sidecar_client::{
    AttachRequest, AttachResult, CheckRequest, DetachRequest, GcReport, GcRequest, SidecarClient,
    SidecarError, SidecarStatus,
};

/// What the fake answers; `None` means "unreachable".
#[derive(Default)]
pub struct Script {
    pub attach: Option<Result<AttachResult, SidecarError>>,
    pub status: Option<Result<SidecarStatus, SidecarError>>,
    pub gc: Option<Result<GcReport, SidecarError>>,
    pub detach: Option<Result<(), SidecarError>>,
    pub check: Option<Result<(), SidecarError>>,
}

/// Requests the fake saw, for assertions.
#[derive(Default, Debug)]
pub struct Seen {
    pub attach: Vec<AttachRequest>,
    pub detach: Vec<DetachRequest>,
    pub check: Vec<CheckRequest>,
    pub gc: Vec<GcRequest>,
    pub status: usize,
}

pub struct Fake {
    pub script: Script,
    pub seen: Rc<RefCell<Seen>>,
}

fn unreachable() -> SidecarError {
    SidecarError::Unreachable {
        path: PathBuf::from("/nonexistent/sidecar.sock"),
        source: io::Error::from(io::ErrorKind::NotFound),
    }
}

impl SidecarClient for Fake {
    fn attach(
        &mut self,
        req: &AttachRequest,
        _tap: std::os::fd::BorrowedFd<'_>,
        _deadline: Instant,
    ) -> Result<AttachResult, SidecarError> {
        self.seen.borrow_mut().attach.push(req.clone());
        self.script
            .attach
            .take()
            .unwrap_or_else(|| Err(unreachable()))
    }

    fn detach(&mut self, req: &DetachRequest, _deadline: Instant) -> Result<(), SidecarError> {
        self.seen.borrow_mut().detach.push(req.clone());
        self.script
            .detach
            .take()
            .unwrap_or_else(|| Err(unreachable()))
    }

    fn check(&mut self, req: &CheckRequest, _deadline: Instant) -> Result<(), SidecarError> {
        self.seen.borrow_mut().check.push(req.clone());
        self.script
            .check
            .take()
            .unwrap_or_else(|| Err(unreachable()))
    }

    fn status(&mut self, _deadline: Instant) -> Result<SidecarStatus, SidecarError> {
        self.seen.borrow_mut().status += 1;
        self.script
            .status
            .take()
            .unwrap_or_else(|| Err(unreachable()))
    }

    fn gc(&mut self, req: &GcRequest, _deadline: Instant) -> Result<GcReport, SidecarError> {
        self.seen.borrow_mut().gc.push(req.clone());
        self.script.gc.take().unwrap_or_else(|| Err(unreachable()))
    }
}

/// Records TAP creations/deletions instead of touching the kernel; `create`
/// hands out an fd of `/dev/null`. `fail_create` makes creation fail (102).
/// `existing_mac` is the MAC of the TAP `delete` finds (`None`: whatever MAC
/// the caller expects); `deleted` lists only TAPs actually removed, `refused`
/// the (netns, ifname, expected MAC) of those left alone as someone else's.
#[derive(Default)]
pub struct FakeTaps {
    pub created: RefCell<Vec<(String, String, [u8; 6])>>,
    pub deleted: RefCell<Vec<(String, String)>>,
    pub refused: RefCell<Vec<(String, String, [u8; 6])>>,
    /// `remove_leftovers` calls: (netns, what).
    pub cleaned: RefCell<Vec<(String, crate::pod_tap::PodRouting)>>,
    pub existing_mac: Option<[u8; 6]>,
    /// The link `delete` finds is no TAP (a veth).
    pub not_a_tap: bool,
    pub fail_create: bool,
}

impl crate::pod_tap::PodTaps for FakeTaps {
    fn create(
        &self,
        netns: &str,
        ifname: &str,
        mac: [u8; 6],
    ) -> Result<std::os::fd::OwnedFd, crate::spec::CniError> {
        if self.fail_create {
            return Err(crate::spec::CniError::new(
                crate::spec::ErrorCode::TapNetns,
                "cannot create TAP",
                "",
            ));
        }
        self.created
            .borrow_mut()
            .push((netns.into(), ifname.into(), mac));
        Ok(std::fs::File::open("/dev/null").expect("/dev/null").into())
    }

    fn delete(
        &self,
        netns: &str,
        ifname: &str,
        ours: [u8; 6],
    ) -> Result<crate::pod_tap::TapRemoval, crate::spec::CniError> {
        if self.not_a_tap {
            return Ok(crate::pod_tap::TapRemoval::NotATap {
                kind: Some("veth".into()),
            });
        }
        match self.existing_mac {
            Some(mac) if mac != ours => {
                self.refused
                    .borrow_mut()
                    .push((netns.into(), ifname.into(), ours));
                Ok(crate::pod_tap::TapRemoval::NotOurs { mac })
            }
            _ => {
                self.deleted
                    .borrow_mut()
                    .push((netns.into(), ifname.into()));
                Ok(crate::pod_tap::TapRemoval::Removed)
            }
        }
    }

    fn remove_leftovers(&self, netns: &str, leftovers: &crate::pod_tap::PodRouting) -> Vec<String> {
        self.cleaned
            .borrow_mut()
            .push((netns.into(), leftovers.clone()));
        Vec::new()
    }
}

/// A `Connect` that hands out one fake per call (all sharing `seen`) and
/// records the socket paths asked for.
pub struct Harness {
    pub seen: Rc<RefCell<Seen>>,
    pub taps: FakeTaps,
    pub sockets: RefCell<Vec<PathBuf>>,
    script: RefCell<Option<Script>>,
}

impl Harness {
    pub fn new(script: Script) -> Harness {
        Harness {
            seen: Rc::default(),
            taps: FakeTaps::default(),
            sockets: RefCell::default(),
            script: RefCell::new(Some(script)),
        }
    }

    pub fn connect(&self, path: &std::path::Path) -> Box<dyn SidecarClient> {
        self.sockets.borrow_mut().push(path.to_owned());
        let script = self.script.borrow_mut().take().unwrap_or_default();
        Box::new(Fake {
            script,
            seen: self.seen.clone(),
        })
    }
}
