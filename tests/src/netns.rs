//! Network-namespace harness for mesh-init's real-traffic tests: a "pod" and a "peer" namespace
//! joined by a veth pair, with private addresses that exist only inside them, deleted on drop.
//!
//! One test process plays app, proxy and peer: [`Netns::enter`] runs a closure on a fresh thread
//! that has joined the namespace (`setns` is per thread), and [`connect_as`] sets the thread's
//! filesystem UID/GID (what iptables' owner match and nft's `skuid` see) before connecting.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};

/// Fails with an install hint unless running as root with `ip`, `iptables`, `ip6tables` and `nft`.
pub fn require_root_and_tools() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("these tests create network namespaces and need root (run them as root, e.g. in CI's container)");
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("ip6tables", "iptables"),
        ("iptables-save", "iptables"),
        ("nft", "nftables"),
    ] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
            || Command::new(tool).arg("-V").output().is_ok_and(|o| o.status.success());
        if !found {
            bail!("{tool} not found: install it (apt-get install -y {package})");
        }
    }
    Ok(())
}

/// The path of the mesh-init binary in the workspace target directory (beside the test binary's
/// `deps/`). Fails with a hint when it has not been built.
pub fn mesh_init_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    let mut dir = exe.parent().context("test binary has no directory")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("mesh-init");
    if !bin.is_file() {
        bail!("{} not found: build it first (cargo build -p mesh-init)", bin.display());
    }
    Ok(bin)
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Netns {
    /// Creates the namespace `name` with `lo` up. A leftover namespace of the same name is replaced.
    pub fn create(name: &str) -> Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_owned() };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace and returns its output (whatever the exit status).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .with_context(|| format!("running {program} in netns {}", self.name))
    }

    /// Like [`Netns::exec`], failing unless the command exits 0; returns its stdout.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self.exec(program, args)?;
        if !out.status.success() {
            bail!(
                "{program} {} in {} failed ({}): {}{}",
                args.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a new thread that has joined this namespace, and returns its result.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).with_context(|| format!("opening {path}"))?;
                setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {}", self.name))?;
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A pod and a peer namespace joined by a veth pair (`eth0` on both sides).
#[derive(Debug)]
pub struct Pair {
    /// Where mesh-init runs (the app and the proxy).
    pub pod: Netns,
    /// The other end: a remote service and a remote client.
    pub peer: Netns,
    /// The pod's IPv4 address (10.248.N.1).
    pub pod_v4: Ipv4Addr,
    /// The peer's IPv4 address (10.248.N.2).
    pub peer_v4: Ipv4Addr,
    /// A second peer IPv4 address (10.248.N.3), for exclusion tests.
    pub peer_v4_alt: Ipv4Addr,
    /// The pod's IPv6 address (fd00:248:N::1).
    pub pod_v6: Ipv6Addr,
    /// The peer's IPv6 address (fd00:248:N::2).
    pub peer_v6: Ipv6Addr,
    /// A second peer IPv6 address (fd00:248:N::3).
    pub peer_v6_alt: Ipv6Addr,
}

impl Pair {
    /// Creates `<tag>-pod-<pid>` and `<tag>-peer-<pid>`; `subnet` (unique per test) picks the
    /// addresses 10.248.`subnet`.0/24 and fd00:248:`subnet`::/64.
    pub fn create(tag: &str, subnet: u8) -> Result<Pair> {
        let pid = std::process::id();
        let pod = Netns::create(&format!("{tag}-pod-{pid}"))?;
        let peer = Netns::create(&format!("{tag}-peer-{pid}"))?;
        ip(&["-n", pod.name(), "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer.name()])?;
        let pod_v4 = Ipv4Addr::new(10, 248, subnet, 1);
        let peer_v4 = Ipv4Addr::new(10, 248, subnet, 2);
        let peer_v4_alt = Ipv4Addr::new(10, 248, subnet, 3);
        let s = u16::from(subnet);
        let pod_v6 = Ipv6Addr::new(0xfd00, 0x248, s, 0, 0, 0, 0, 1);
        let peer_v6 = Ipv6Addr::new(0xfd00, 0x248, s, 0, 0, 0, 0, 2);
        let peer_v6_alt = Ipv6Addr::new(0xfd00, 0x248, s, 0, 0, 0, 0, 3);
        for (ns, v4s, v6s) in
            [(&pod, vec![pod_v4], vec![pod_v6]), (&peer, vec![peer_v4, peer_v4_alt], vec![peer_v6, peer_v6_alt])]
        {
            for a in v4s {
                ip(&["-n", ns.name(), "addr", "add", &format!("{a}/24"), "dev", "eth0"])?;
            }
            for a in v6s {
                ip(&["-n", ns.name(), "addr", "add", &format!("{a}/64"), "dev", "eth0", "nodad"])?;
            }
            ip(&["-n", ns.name(), "link", "set", "eth0", "up"])?;
        }
        Ok(Pair { pod, peer, pod_v4, peer_v4, peer_v4_alt, pod_v6, peer_v6, peer_v6_alt })
    }

    /// The pod's address of `family` (`v6` true for IPv6).
    pub fn pod_addr(&self, v6: bool) -> IpAddr {
        if v6 { self.pod_v6.into() } else { self.pod_v4.into() }
    }

    /// The peer's address of the family.
    pub fn peer_addr(&self, v6: bool) -> IpAddr {
        if v6 { self.peer_v6.into() } else { self.peer_v4.into() }
    }

    /// The peer's second address of the family.
    pub fn peer_alt_addr(&self, v6: bool) -> IpAddr {
        if v6 { self.peer_v6_alt.into() } else { self.peer_v4_alt.into() }
    }
}

/// Binds a non-blocking listener on the unspecified address of the family, inside `ns`;
/// `transparent` sets IP_TRANSPARENT (what Envoy does for TPROXY).
pub fn listen(ns: &Netns, port: u16, v6: bool, transparent: bool) -> Result<TcpListener> {
    ns.enter(|| {
        let ip: IpAddr = if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
        let l = TcpListener::bind(SocketAddr::new(ip, port)).with_context(|| format!("bind port {port}"))?;
        if transparent {
            setsockopt(&l, sockopt::IpTransparent, &true).context("IP_TRANSPARENT")?;
        }
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// Connects from `ns` to `dst` as `uid`/`gid` (filesystem ids of the connecting thread), with a
/// 3 s timeout. Returns the connected stream.
pub fn connect_as(ns: &Netns, dst: SocketAddr, uid: u32, gid: u32) -> Result<TcpStream> {
    ns.enter(|| {
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
        let s = TcpStream::connect_timeout(&dst, Duration::from_secs(3)).with_context(|| format!("connect to {dst}"));
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
        s
    })
}

/// Waits up to `timeout` for `listener` to accept the connection whose client end is `client`
/// (matched by the client's address), skipping others. `None` if it never arrives.
pub fn accept_from(listener: &TcpListener, client: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((s, from)) if same_endpoint(from, client) => return Some(s),
            Ok(_) => continue,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    None
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) of an accepted stream.
pub fn original_dst(stream: &TcpStream) -> Result<SocketAddr> {
    if stream.local_addr()?.is_ipv6() {
        let a = getsockopt(stream, sockopt::Ip6tOriginalDst).context("IP6T_SO_ORIGINAL_DST")?;
        Ok(SocketAddr::new(Ipv6Addr::from(a.sin6_addr.s6_addr).into(), u16::from_be(a.sin6_port)))
    } else {
        let a = getsockopt(stream, sockopt::OriginalDst).context("SO_ORIGINAL_DST")?;
        Ok(SocketAddr::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into(), u16::from_be(a.sin_port)))
    }
}

/// `iptables-save` and `ip6tables-save` of `ns`, without the timestamp comments and counters.
pub fn iptables_state(ns: &Netns) -> Result<String> {
    iptables_state_of(ns, "")
}

/// Like [`iptables_state`] for a flavor: `""` (the system default), `"-legacy"` or `"-nft"`.
pub fn iptables_state_of(ns: &Netns, flavor: &str) -> Result<String> {
    let mut out = String::new();
    for tool in [format!("iptables{flavor}-save"), format!("ip6tables{flavor}-save")] {
        let tool = tool.as_str();
        out.push_str(&ns.exec_ok(tool, &[])?);
    }
    Ok(out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `nft list ruleset` of `ns`.
pub fn nft_state(ns: &Netns) -> Result<String> {
    ns.exec_ok("nft", &["list", "ruleset"])
}

/// `text` with nft counter values removed (`counter packets 3 bytes 180` -> `counter`): stray
/// packets (IPv6 neighbour discovery, FINs of closed test connections) change them, not the rules.
pub fn without_counters(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("counter packets ") {
            Some(i) => {
                let rest = &l[i + "counter packets ".len()..];
                let after: Vec<&str> = rest.splitn(4, ' ').collect();
                // after = [N, "bytes", M, rest...]
                let tail = after.get(3).copied().unwrap_or("");
                format!("{}counter {tail}", &l[..i]).trim_end().to_owned()
            }
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ip rule` of both families in `ns`.
pub fn ip_rules(ns: &Netns) -> Result<String> {
    Ok(ns.exec_ok("ip", &["-4", "rule", "show"])? + &ns.exec_ok("ip", &["-6", "rule", "show"])?)
}
