//! The XDP program of the AF_XDP backend (issue 13), and its loader.
//!
//! `xdp/media_redirect.bpf.c` (built by `build.rs` with Debian's clang) sends UDP for the
//! media plane's address and RTP port range to the receive queue's AF_XDP socket and
//! passes everything else to the kernel; a queue without a socket passes its media
//! frames to the kernel too, where the media plane's sockets stay bound. [`Program`]
//! loads it with aya, writes the address and range into its `config` map and attaches
//! it to an interface through a kernel link, so the program goes when the process does
//! (a crashed media plane leaves nothing behind). The sockets themselves (UMEM, rings)
//! come in the backend's next step.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{Array, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpFlags};
use aya::Ebpf;

/// Bytes at an 8-byte boundary (the ELF parser reads the object's headers in place).
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

/// The compiled program (empty when `build.rs` found no clang).
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/media_redirect.bpf.o")));

/// The program's name in the object.
const NAME: &str = "ferroswitch_media";

/// How the program is attached (`media.xdp_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (the NIC's own XDP support; veth has it).
    Native,
    /// In the kernel's generic path, after the skb is made (every driver; slower).
    Generic,
}

/// Why the program could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpError {
    /// This build has no XDP program.
    #[error(
        "this build has no XDP program: install clang, llvm and libbpf-dev (ci/install-deps.sh build) and rebuild"
    )]
    NotBuilt,
    /// The object does not parse (a build problem, not the kernel's).
    #[error("the XDP object does not parse: {0}")]
    Parse(String),
    /// The kernel would not load it (its verifier, or missing capabilities).
    #[error("loading the XDP program: {0}")]
    Load(String),
    /// It would not attach to the interface.
    #[error("attaching the XDP program to {interface} ({mode:?} mode): {why}")]
    Attach {
        /// The interface.
        interface: String,
        /// The mode asked for.
        mode: Mode,
        /// The kernel's answer.
        why: String,
    },
}

/// The media plane's addresses and ports as the program reads them (`struct media_config`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MediaConfig {
    ipv4: u32,
    ipv6: [u32; 4],
    port_min: u16,
    port_max: u16,
    has_ipv6: u16,
    workers: u16,
    span: u32,
}

// SAFETY: plain integers, no padding (4 + 16 + 2 + 2 + 2 + 2 + 4 bytes), as the program's struct.
unsafe impl aya::Pod for MediaConfig {}

impl MediaConfig {
    /// Frames to `ipv4` and/or `ipv6`, UDP ports `ports` (inclusive), are the media plane's.
    pub fn new(ipv4: Option<Ipv4Addr>, ipv6: Option<Ipv6Addr>, ports: (u16, u16)) -> MediaConfig {
        let v6 = ipv6.map(|a| a.octets()).unwrap_or_default();
        let word = |i: usize| u32::from_ne_bytes([v6[4 * i], v6[4 * i + 1], v6[4 * i + 2], v6[4 * i + 3]]);
        MediaConfig {
            ipv4: ipv4.map_or(0, |a| u32::from_ne_bytes(a.octets())),
            ipv6: [word(0), word(1), word(2), word(3)],
            port_min: ports.0,
            port_max: ports.1,
            has_ipv6: u16::from(ipv6.is_some()),
            workers: 1,
            span: 0,
        }
    }

    /// `workers` workers: worker `i` owns the `span` ports from `port_min + i * span` (the
    /// last one the rest too) and reads receive queue `i`; a frame for its ports on another
    /// queue is counted (`other_queue`) and handed over by that queue's worker.
    pub fn with_workers(self, workers: u16, span: u16) -> MediaConfig {
        MediaConfig { span: u32::from(span), workers, ..self }
    }
}

/// What the program decided, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames for the media plane.
    pub media: u64,
    /// Frames passed to the kernel as not the media plane's.
    pub passed: u64,
    /// Media frames passed to the kernel for want of a socket on their queue.
    pub no_socket: u64,
    /// Media frames for another worker's ports than their queue's (handed over).
    pub other_queue: u64,
}

/// The program, loaded and attached to one interface; detached when dropped.
pub struct Program {
    ebpf: Ebpf,
    interface: String,
}

impl Program {
    /// Whether this build carries the program.
    pub fn built() -> bool {
        !OBJECT.0.is_empty()
    }

    /// Loads the program with `config` and attaches it to `interface` in `mode`.
    pub fn attach(interface: &str, mode: Mode, config: MediaConfig) -> Result<Program, XdpError> {
        if !Program::built() {
            return Err(XdpError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(&OBJECT.0).map_err(|e| XdpError::Parse(error_chain(&e)))?;
        let mut cfg: Array<_, MediaConfig> = ebpf
            .map_mut("config")
            .ok_or_else(|| XdpError::Parse("no config map in the object".into()))
            .and_then(|m| Array::try_from(m).map_err(|e| XdpError::Parse(e.to_string())))?;
        cfg.set(0, config, 0).map_err(|e| XdpError::Load(e.to_string()))?;
        let program: &mut Xdp = ebpf
            .program_mut(NAME)
            .ok_or_else(|| XdpError::Parse(format!("no program {NAME} in the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
        program.load().map_err(|e| XdpError::Load(error_chain(&e)))?;
        let flags = match mode {
            Mode::Native => XdpFlags::DRV_MODE,
            Mode::Generic => XdpFlags::SKB_MODE,
        };
        program.attach(interface, flags).map_err(|e| XdpError::Attach {
            interface: interface.to_string(),
            mode,
            why: error_chain(&e),
        })?;
        Ok(Program { ebpf, interface: interface.to_string() })
    }

    /// The interface it is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Sends receive queue `queue`'s media frames to the AF_XDP socket `fd` (a worker's;
    /// until then, and once it is closed, they go to the kernel).
    pub fn register(&mut self, queue: u32, fd: std::os::fd::RawFd) -> Result<(), XdpError> {
        let map = self.ebpf.map_mut("xsks").ok_or_else(|| XdpError::Parse("no xsks map in the object".into()))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| XdpError::Parse(e.to_string()))?;
        // SAFETY: only the fd number is read; the caller keeps the socket open while registered.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        xsks.set(queue, fd, 0).map_err(|e| XdpError::Load(error_chain(&e)))
    }

    /// Its counters now.
    pub fn counters(&self) -> Counters {
        let Some(map) = self.ebpf.map("counters") else { return Counters::default() };
        let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else { return Counters::default() };
        let sum = |i: u32| array.get(&i, 0).map_or(0, |v| v.iter().sum());
        Counters { media: sum(0), passed: sum(1), no_socket: sum(2), other_queue: sum(3) }
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_laid_out_as_the_programs_struct_in_network_order() {
        assert_eq!(size_of::<MediaConfig>(), 32);
        let c =
            MediaConfig::new(Some("192.0.2.1".parse().unwrap()), Some("2001:db8::1".parse().unwrap()), (16384, 32767))
                .with_workers(2, 8192);
        // SAFETY: a plain struct of integers viewed as its bytes.
        let bytes: [u8; 32] = unsafe { std::mem::transmute(c) };
        assert_eq!(u32::from_ne_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]), 8192);
        assert_eq!(&bytes[0..4], &[192, 0, 2, 1], "daddr as it is on the wire");
        assert_eq!(&bytes[4..8], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(&bytes[19..20], &[1]);
        assert_eq!(u16::from_ne_bytes([bytes[24], bytes[25]]), 1, "has_ipv6");
        assert_eq!(u16::from_ne_bytes([bytes[26], bytes[27]]), 2, "workers");
        assert_eq!(u16::from_ne_bytes([bytes[20], bytes[21]]), 16384);
        assert_eq!(u16::from_ne_bytes([bytes[22], bytes[23]]), 32767);
        assert_eq!(MediaConfig::new(None, None, (1, 2)).has_ipv6, 0);
    }

    #[cfg(xdp_program)]
    #[test]
    fn the_program_is_in_this_build() {
        assert!(Program::built());
    }
}
