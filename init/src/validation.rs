//! `--run-validation`, as Istio's validator: listen on the outbound and inbound capture ports,
//! connect as the proxy user to 127.0.0.6 on the probe port, and check that the connection was
//! captured (accepted by one of the listeners, with SO_ORIGINAL_DST equal to the probe address).
//! When IPv6 rules are programmed, the same check runs again for `[::6]:<probe port>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
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
        probe: SocketAddr,
        /// How long it waited.
        timeout: Duration,
        /// The UID it connected as.
        uid: u32,
        /// The outbound capture port.
        outbound: u16,
        /// The inbound capture port.
        inbound: u16,
    },
    /// IPv6 rules are programmed but `::6` (the inbound passthrough source) is not a local address.
    #[error(
        "cannot validate IPv6 capture: ::6 is not an address of this network namespace ({source}); \
         add it with `ip -6 addr add ::6/128 dev lo`"
    )]
    MissingV6Passthrough {
        /// The bind error.
        source: std::io::Error,
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
    /// How long to wait (per family).
    pub timeout: Duration,
    /// Whether IPv6 rules are programmed, so `[::6]` is probed too.
    pub ipv6: bool,
}

/// Runs the validation (IPv4, then IPv6 when enabled); returns the listener port that accepted
/// the captured connection of each family probed.
pub fn validate(p: Probe) -> Result<Vec<u16>, ValidationError> {
    let mut ports = vec![validate_family(p, SocketAddr::from((ports::INBOUND_PASSTHROUGH_V4, p.probe_port)))?];
    if p.ipv6 {
        let probe = SocketAddr::from((ports::INBOUND_PASSTHROUGH_V6, p.probe_port));
        // Without ::6 on an interface the probe would leave through the default route (or fail)
        // instead of looping over lo, and the failure would look like missing rules.
        TcpListener::bind(SocketAddr::from((ports::INBOUND_PASSTHROUGH_V6, 0)))
            .map_err(|source| ValidationError::MissingV6Passthrough { source })?;
        ports.push(validate_family(p, probe)?);
    }
    Ok(ports)
}

/// Connects to `probe` from `[::1]`. Left to itself the kernel picks `::6` as the source of a
/// connection to `::6`, and Istio's rules return traffic from `::6` (the inbound passthrough)
/// uncaptured; from `::1` it takes the same path as the IPv4 probe, whose source is 127.0.0.1.
fn connect_from_v6_loopback(probe: SocketAddr) -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn6, bind, connect, socket};
    let SocketAddr::V6(dst) = probe else { return Err(nix::errno::Errno::EAFNOSUPPORT) };
    let fd = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn6::from(dst))
}

/// The original destination of a captured stream of the probe's family.
fn original_dst(stream: &TcpStream, v6: bool) -> Option<SocketAddr> {
    if v6 {
        let a = getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
        Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a.sin6_addr.s6_addr), u16::from_be(a.sin6_port), 0, 0)))
    } else {
        let a = getsockopt(stream, sockopt::OriginalDst).ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
            u16::from_be(a.sin_port),
        )))
    }
}

/// Listens on the capture ports of `probe`'s family, connects to `probe` and waits for a captured
/// connection. The listeners are closed on return, so the next family can bind the same ports.
fn validate_family(p: Probe, probe: SocketAddr) -> Result<u16, ValidationError> {
    let v6 = probe.is_ipv6();
    let any: IpAddr = if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
    let mut listeners = Vec::new();
    for port in [p.outbound, p.inbound] {
        let addr = SocketAddr::new(any, port);
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
                if probe.is_ipv6() {
                    let _ = connect_from_v6_loopback(probe);
                } else {
                    let _ = TcpStream::connect_timeout(&probe, Duration::from_millis(500));
                }
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
                let original = original_dst(&stream, v6);
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
