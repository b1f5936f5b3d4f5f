//! A frame counter for tests: an `AF_PACKET` socket in a namespace of the lab (a macvlan slave
//! beside the containers) that records the DHCPv4 requests (UDP to port 67) it sees, with their
//! Ethernet destination. What a neighbour slave receives is what the master fans out to every
//! slave, so a test can tell an Ethernet broadcast from a unicast that went to the server only.

#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

/// One DHCPv4 request seen: Ethernet destination and source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

impl Seen {
    pub fn is_broadcast(&self) -> bool {
        self.dst == [0xff; 6]
    }
}

/// Records frames until dropped.
pub struct Sniffer {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sniffer {
    /// Starts recording in `netns` (a path under /run/netns) on every interface there; returns
    /// once the socket is open, so nothing sent after it is missed.
    pub fn start(netns: &Path) -> Sniffer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.to_path_buf();
        let (s2, st2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // This thread is ours alone: setns here moves nobody else.
            let sock = match open(&netns) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
            while !st2.load(Ordering::SeqCst) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                // SAFETY: recv initialised the first n bytes.
                let frame: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                if let Some(s) = dhcp_request(&frame) {
                    s2.lock().push(s);
                }
            }
        });
        ready_rx
            .recv()
            .expect("sniffer thread")
            .expect("sniffer socket");
        Sniffer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// What was seen so far, and forgets it.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock())
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// On the calling thread: enter `netns`, open a raw packet socket for IPv4 on every interface.
fn open(netns: &Path) -> io::Result<Socket> {
    let f = File::open(netns)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let proto = Protocol::from(i32::from((libc::ETH_P_IP as u16).to_be()));
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(sock)
}

/// The Ethernet addresses of `frame` if it holds an IPv4 UDP datagram to port 67.
fn dhcp_request(frame: &[u8]) -> Option<Seen> {
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9) != Some(&17) {
        return None;
    }
    let udp = ip.get(ihl..)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    (dport == 67).then(|| Seen {
        dst: frame[0..6].try_into().unwrap(),
        src: frame[6..12].try_into().unwrap(),
    })
}
