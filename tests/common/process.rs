//! Child processes given loopback ports: `guardrails serve`, and etcd and kube-apiserver in the
//! e2e suite.
//!
//! None of them can be handed a bound socket (`guardrails serve` takes `--listen ADDRESS`), so a
//! port is picked by binding port 0 and letting go of it, and another process may take it before
//! the child binds it. A child that fails because a port was taken is therefore started again on
//! new ports, a few times ([`on_free_ports`]). And a port that accepts connections may belong to
//! that other process: a child is ready only once it holds the listening socket itself
//! ([`listens`]). In-process servers have no such race: they are handed a bound
//! `tokio::net::TcpListener`.

use std::net::{Ipv4Addr, TcpListener};

/// Starts of a child before giving up on finding free ports.
const ATTEMPTS: usize = 5;

/// `count` distinct ports free on 127.0.0.1 when this returns (bound together, so never the same
/// port twice, then let go).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// Whether a child's output says that it could not bind a port: Rust's "Address already in use"
/// and Go's "bind: address already in use".
fn port_taken(output: &str) -> bool {
    output
        .to_ascii_lowercase()
        .contains("address already in use")
}

/// `start` with `count` free ports; when it fails with a message (its output) saying that a port
/// was already in use, again with new ports, up to 5 starts. `start` must leave nothing running
/// when it fails.
pub fn on_free_ports<T>(
    count: usize,
    mut start: impl FnMut(&[u16]) -> Result<T, String>,
) -> Result<T, String> {
    let mut attempt = 1;
    loop {
        let ports = free_ports(count);
        match start(&ports) {
            Err(error) if port_taken(&error) && attempt < ATTEMPTS => {
                eprintln!("a port of {ports:?} was taken before the child bound it; new ports");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether process `pid` holds a socket listening on TCP `port` of 127.0.0.1 or of every IPv4
/// address (Linux: `/proc/net/tcp` and `/proc/<pid>/fd`).
pub fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // `sl local_address rem_address st … inode`: the address as the kernel's 32-bit word in hex,
    // the port in hex, state 0A for LISTEN.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, local_port) = fields.get(1)?.split_once(':')?;
            let address = Ipv4Addr::from(u32::from_str_radix(address, 16).ok()?.to_ne_bytes());
            let listening = fields.get(3) == Some(&"0A")
                && u16::from_str_radix(local_port, 16) == Ok(port)
                && (address.is_loopback() || address.is_unspecified());
            if !listening {
                return None;
            }
            Some(format!("socket:[{}]", fields.get(9)?))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}
