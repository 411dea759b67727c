//! `--run-validation`, as Istio's validator: listen on the outbound and inbound capture ports,
//! connect as the proxy user to 127.0.0.6 on the probe port, and check that the connection was
//! captured (accepted by one of the listeners, with SO_ORIGINAL_DST equal to the probe address).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mesh_core::ports;
use nix::sys::socket::{getsockopt, sockopt};

/// Why validation failed.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// A capture port is already in use, or binding failed.
    #[error("cannot listen on {addr}: {source} (is another process using the capture port?)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// No captured connection arrived in time.
    #[error(
        "no connection to {probe} was captured within {timeout:?}: traffic from UID {uid} is not redirected \
         to ports {outbound}/{inbound}; check that the capture rules are installed in this pod's network namespace"
    )]
    Timeout {
        /// The probe address.
        probe: SocketAddrV4,
        /// How long it waited.
        timeout: Duration,
        /// The UID it connected as.
        uid: u32,
        /// The outbound capture port.
        outbound: u16,
        /// The inbound capture port.
        inbound: u16,
    },
}

/// The settings of a validation run.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The outbound capture port to listen on.
    pub outbound: u16,
    /// The inbound capture port to listen on.
    pub inbound: u16,
    /// The port dialled on 127.0.0.6.
    pub probe_port: u16,
    /// The UID the client connects as.
    pub uid: u32,
    /// The GID the client connects as.
    pub gid: u32,
    /// How long to wait.
    pub timeout: Duration,
}

/// Runs the validation; returns the listener port that accepted the captured connection.
pub fn validate(p: Probe) -> Result<u16, ValidationError> {
    let probe = SocketAddrV4::new(ports::INBOUND_PASSTHROUGH_V4, p.probe_port);
    let mut listeners = Vec::new();
    for port in [p.outbound, p.inbound] {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let l = TcpListener::bind(addr).map_err(|source| ValidationError::Listen { addr, source })?;
        l.set_nonblocking(true).map_err(|source| ValidationError::Listen { addr, source })?;
        listeners.push((port, l));
    }
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + p.timeout;
    let client = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // Per-thread: the socket is owned by the proxy's UID/GID, as the owner match sees it.
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(p.gid));
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(p.uid));
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = TcpStream::connect_timeout(&SocketAddr::V4(probe), Duration::from_millis(500));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut result = Err(ValidationError::Timeout {
        probe,
        timeout: p.timeout,
        uid: p.uid,
        outbound: p.outbound,
        inbound: p.inbound,
    });
    'outer: while Instant::now() < deadline {
        for (port, l) in &listeners {
            if let Ok((stream, _)) = l.accept() {
                let original = getsockopt(&stream, sockopt::OriginalDst).ok();
                let original = original.map(|a| {
                    SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port))
                });
                tracing::debug!(port, ?original, "validation connection accepted");
                if original == Some(probe) {
                    result = Ok(*port);
                    break 'outer;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::Relaxed);
    let _ = client.join();
    result
}
