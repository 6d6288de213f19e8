//! An AF_XDP socket with its own UMEM, bound to one receive queue (issue 13): the frames
//! the XDP program redirects arrive in the socket's RX ring, straight in UMEM frames the
//! worker owns; a frame is sent by putting it in the TX ring. Four single-producer
//! single-consumer rings shared with the kernel (mmapped), indexed by free-running u32
//! counters:
//!
//! | ring | we | the kernel | holds |
//! |---|---|---|---|
//! | fill | produce | consumes | frames it may receive into |
//! | RX | consume | produces | received frames (address, length) |
//! | TX | produce | consumes | frames to send |
//! | completion | consume | produces | frames sent, to reuse |
//!
//! Ordering: a producer writes its descriptors, then publishes its index with Release;
//! a consumer reads the index with Acquire before the descriptors, and publishes its own
//! index with Release once done with them (the kernel's side is the same, see
//! Documentation/networking/af_xdp.rst). Frames cycle fill → RX → (forwarded in place)
//! TX → completion → fill; the worker never copies a frame.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per UMEM frame.
pub const FRAME: usize = 2048;

/// Kicks one flush makes at most in copy mode (32 frames each: a 4,096-frame ring).
const KICKS_PER_FLUSH: usize = 128;

/// Copy or zero-copy (the driver's frames are the UMEM's; needs a NIC that has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskMode {
    /// The kernel copies frames between its buffers and the UMEM (every driver).
    Copy,
    /// The NIC's DMA goes to the UMEM (ice, i40e, mlx5...).
    ZeroCopy,
}

/// One mmapped ring.
struct Ring {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
}

impl Ring {
    /// Maps ring `pgoff` of `fd`, `entries` descriptors of `desc_size` bytes at `off`.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, entries: u32, desc_size: usize, pgoff: i64) -> io::Result<Ring> {
        let map_len = off.desc as usize + entries as usize * desc_size;
        // SAFETY: maps the kernel's ring for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |o: u64| map.cast::<u8>().wrapping_add(o as usize);
        Ok(Ring {
            map,
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            desc: at(off.desc),
            mask: entries - 1,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: inside the live mapping, a u32 the kernel and we update atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for the producer.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for the producer.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// The `i`-th (free-running index) u64 descriptor (fill and completion rings).
    fn addr(&self, i: u32) -> *mut u64 {
        self.desc.cast::<u64>().wrapping_add((i & self.mask) as usize)
    }

    /// The `i`-th packet descriptor (RX and TX rings).
    fn packet(&self, i: u32) -> *mut libc::xdp_desc {
        self.desc.cast::<libc::xdp_desc>().wrapping_add((i & self.mask) as usize)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps what `map` mapped, once.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// An AF_XDP socket, its UMEM and its four rings.
pub struct Xsk {
    fd: OwnedFd,
    umem: *mut u8,
    umem_len: usize,
    fill: Ring,
    comp: Ring,
    rx: Ring,
    tx: Ring,
    /// Frames neither in a ring nor being handled (the fill ring had no room).
    spare: Vec<u64>,
    /// Copy mode (every send is kicked).
    copy: bool,
    /// Frames were queued by [`Xsk::send_copy`] since the last kick.
    kick: bool,
}

// SAFETY: the mappings belong to this value alone; it is used by one thread at a time.
unsafe impl Send for Xsk {}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T of the size given.
    let r = unsafe {
        libc::setsockopt(fd, libc::SOL_XDP, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Xsk {
    /// A socket on queue `queue` of interface `ifindex`, with `frames` descriptors in each
    /// ring (a power of two) and a UMEM of twice as many frames: one half fills the fill
    /// ring, the other takes copies of frames sent that were not received here
    /// ([`Xsk::send_copy`]).
    pub fn new(ifindex: u32, queue: u32, frames: u32, mode: XskMode) -> io::Result<Xsk> {
        assert!(frames.is_power_of_two(), "ring sizes are powers of two");
        // SAFETY: plain socket creation; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = 2 * frames as usize * FRAME;
        // SAFETY: an anonymous mapping; checked below.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let guard = UmemGuard(umem, umem_len);
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd.as_raw_fd(), libc::XDP_UMEM_REG, &reg)?;
        for ring in [libc::XDP_UMEM_FILL_RING, libc::XDP_UMEM_COMPLETION_RING, libc::XDP_RX_RING, libc::XDP_TX_RING] {
            setsockopt(fd.as_raw_fd(), ring, &frames)?;
        }
        // SAFETY: a zeroed plain struct the kernel fills in.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` is live and `len` its size.
        if unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let raw = fd.as_raw_fd();
        let fill = Ring::map(raw, &off.fr, frames, 8, libc::XDP_UMEM_PGOFF_FILL_RING as i64)?;
        let comp = Ring::map(raw, &off.cr, frames, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64)?;
        let rx = Ring::map(raw, &off.rx, frames, size_of::<libc::xdp_desc>(), libc::XDP_PGOFF_RX_RING)?;
        let tx = Ring::map(raw, &off.tx, frames, size_of::<libc::xdp_desc>(), libc::XDP_PGOFF_TX_RING)?;
        std::mem::forget(guard);
        let copy = mode == XskMode::Copy;
        let mut x = Xsk {
            fd,
            umem: umem.cast(),
            umem_len,
            fill,
            comp,
            rx,
            tx,
            spare: Vec::with_capacity(2 * frames as usize),
            copy,
            kick: false,
        };
        // Half the frames start in the fill ring, the rest spare.
        x.spare.extend((0..2 * u64::from(frames)).map(|i| i * FRAME as u64));
        x.refill();
        let flags = libc::XDP_USE_NEED_WAKEUP
            | match mode {
                XskMode::Copy => libc::XDP_COPY,
                XskMode::ZeroCopy => libc::XDP_ZEROCOPY,
            };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a live sockaddr_xdp of the size given.
        let r = unsafe {
            libc::bind(
                x.fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(x)
    }

    /// The socket's fd (for the XDP program's socket map, and to poll).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Puts spare frames into the fill ring, as far as it has room.
    fn refill(&mut self) {
        let prod = self.fill.producer().load(Ordering::Relaxed);
        let cons = self.fill.consumer().load(Ordering::Acquire);
        let room = (self.fill.mask + 1) - prod.wrapping_sub(cons);
        let n = room.min(self.spare.len() as u32);
        for i in 0..n {
            let addr = self.spare.pop().expect("counted above");
            // SAFETY: a slot we own (between the kernel's consumer and our producer).
            unsafe { *self.fill.addr(prod.wrapping_add(i)) = addr };
        }
        if n > 0 {
            self.fill.producer().store(prod.wrapping_add(n), Ordering::Release);
        }
    }

    /// Takes back the frames the kernel has sent.
    fn reclaim(&mut self) {
        let cons = self.comp.consumer().load(Ordering::Relaxed);
        let prod = self.comp.producer().load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        for i in 0..n {
            // SAFETY: a slot the kernel has published.
            let addr = unsafe { *self.comp.addr(cons.wrapping_add(i)) };
            self.spare.push(addr & !(FRAME as u64 - 1));
        }
        if n > 0 {
            self.comp.consumer().store(cons.wrapping_add(n), Ordering::Release);
        }
    }

    /// Queues a copy of `frame` (built elsewhere: a frame another worker received) for
    /// sending; false (dropped) if no frame or TX slot is free. Sent at [`Xsk::flush`].
    pub fn send_copy(&mut self, frame: &[u8]) -> bool {
        self.reclaim();
        let prod = self.tx.producer().load(Ordering::Relaxed);
        let cons = self.tx.consumer().load(Ordering::Acquire);
        if frame.len() > FRAME || prod.wrapping_sub(cons) > self.tx.mask {
            return false;
        }
        // Keep the fill ring's share: copies take only frames beyond what it lacks.
        let fill_room = (self.fill.mask + 1)
            - self.fill.producer().load(Ordering::Relaxed).wrapping_sub(self.fill.consumer().load(Ordering::Acquire));
        if self.spare.len() as u32 <= fill_room {
            return false;
        }
        let Some(addr) = self.spare.pop() else { return false };
        // SAFETY: a spare frame of our UMEM, ours until the kernel completes it.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.umem.add(addr as usize), frame.len()) };
        // SAFETY: a TX slot we own.
        unsafe { *self.tx.packet(prod) = libc::xdp_desc { addr, len: frame.len() as u32, options: 0 } };
        self.tx.producer().store(prod.wrapping_add(1), Ordering::Release);
        self.kick = true;
        true
    }

    /// Sends what [`Xsk::send_copy`] queued.
    ///
    /// In copy mode the kernel sends only inside a kick, at most 32 frames each
    /// (`xsk_generic_xmit`'s batch), so it is kicked until the TX ring is empty (a burst
    /// left in the ring would wait for the next turn's kick, and the ring fill up); the
    /// frames it completes meanwhile are taken back so its completion ring has room.
    /// In zero-copy mode the driver sends on its own once woken, if it asks to be.
    pub fn flush(&mut self) {
        if !std::mem::take(&mut self.kick) {
            return;
        }
        if !self.copy {
            if self.tx.needs_wakeup() {
                self.sendto_kick();
            }
            return;
        }
        let prod = self.tx.producer().load(Ordering::Relaxed);
        let mut cons = self.tx.consumer().load(Ordering::Acquire);
        for _ in 0..KICKS_PER_FLUSH {
            // EAGAIN also says "32 sent, more left": progress, not the return code, decides.
            self.sendto_kick();
            self.reclaim();
            let now = self.tx.consumer().load(Ordering::Acquire);
            if now == prod || now == cons {
                return;
            }
            cons = now;
        }
    }

    /// One kick of our own socket's send path (its errors say nothing the rings do not).
    fn sendto_kick(&self) {
        // SAFETY: no buffers passed.
        unsafe { libc::sendto(self.fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
    }

    /// Handles every received frame: `f` gets the frame's bytes (the whole UMEM frame
    /// from the packet's start, `len` of them received) and returns the length to send
    /// it back out with, rewritten in place, or None to drop it. The frames received.
    pub fn poll(&mut self, mut f: impl FnMut(&mut [u8], usize) -> Option<usize>) -> usize {
        self.reclaim();
        self.refill();
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let prod = self.rx.producer().load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        let mut tx_prod = self.tx.producer().load(Ordering::Relaxed);
        let tx_cons = self.tx.consumer().load(Ordering::Acquire);
        let mut sent = 0;
        for i in 0..n {
            // SAFETY: a descriptor the kernel has published.
            let d = unsafe { *self.rx.packet(cons.wrapping_add(i)) };
            let (base, len) = (d.addr as usize, d.len as usize);
            // The packet starts inside its frame (after the kernel's headroom) and ends in it.
            let frame_start = base & !(FRAME - 1);
            let room = FRAME - (base - frame_start);
            if base >= self.umem_len {
                // Not one of our frames: nothing to give back.
                continue;
            }
            if len > room {
                self.spare.push(frame_start as u64);
                continue;
            }
            // SAFETY: inside the UMEM, and the frame is ours until we hand it back.
            let bytes = unsafe { std::slice::from_raw_parts_mut(self.umem.add(base), room) };
            let full = tx_prod.wrapping_sub(tx_cons) > self.tx.mask;
            match f(bytes, len).filter(|&l| l <= room && !full) {
                Some(out) => {
                    // SAFETY: a TX slot we own.
                    unsafe { *self.tx.packet(tx_prod) = libc::xdp_desc { addr: d.addr, len: out as u32, options: 0 } };
                    tx_prod = tx_prod.wrapping_add(1);
                    sent += 1;
                }
                None => self.spare.push(frame_start as u64),
            }
        }
        if n > 0 {
            self.rx.consumer().store(cons.wrapping_add(n), Ordering::Release);
        }
        if sent > 0 {
            self.tx.producer().store(tx_prod, Ordering::Release);
            // In copy mode the kernel sends only when kicked; in zero-copy mode when it says so.
            self.kick = true;
        }
        self.flush();
        self.refill();
        if self.fill.needs_wakeup() && n == 0 {
            // SAFETY: a wake-up of our own socket's receive path; no buffers passed.
            unsafe {
                libc::recvfrom(
                    self.fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        n as usize
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: unmaps the UMEM this value mapped, once (the rings unmap themselves).
        unsafe { libc::munmap(self.umem.cast(), self.umem_len) };
    }
}

/// Unmaps the UMEM if set-up fails half-way.
struct UmemGuard(*mut libc::c_void, usize);

impl Drop for UmemGuard {
    fn drop(&mut self) {
        // SAFETY: the mapping made just before.
        unsafe { libc::munmap(self.0, self.1) };
    }
}

/// A received UDP frame's headers, as the relay needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// The sender's MAC (the next hop back to it).
    pub src_mac: [u8; 6],
    /// Where the datagram came from.
    pub src: std::net::SocketAddr,
    /// The address and port it was sent to (ours).
    pub dst_ip: std::net::IpAddr,
    /// The UDP destination port.
    pub dst_port: u16,
    /// The VLAN id of its one 802.1Q tag; None untagged. A double-tagged (QinQ) frame
    /// has `tags` 2.
    pub vlan: Option<u16>,
    /// How many VLAN tags it carries (0 to 2).
    pub tags: u8,
    /// Offsets of the IP header, the UDP header and the payload.
    pub l3: usize,
    /// The UDP header's offset.
    pub udp: usize,
    /// The payload's offset.
    pub payload: usize,
}

impl Headers {
    /// Ethernet (up to two VLAN tags), IPv4 without options or IPv6, UDP; None for
    /// anything else (the XDP program passes only these).
    pub fn parse(f: &[u8]) -> Option<Headers> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let src_mac: [u8; 6] = f.get(6..12)?.try_into().ok()?;
        let mut l3 = 14;
        let mut proto = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        let (mut vlan, mut tags) = (None, 0);
        for _ in 0..2 {
            if proto != 0x8100 && proto != 0x88a8 {
                break;
            }
            vlan = vlan.or(Some(u16::from_be_bytes([*f.get(l3)?, *f.get(l3 + 1)?]) & 0x0fff));
            tags += 1;
            proto = u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?]);
            l3 += 4;
        }
        let (src_ip, dst_ip, udp) = match proto {
            0x0800 => {
                let ip = f.get(l3..l3 + 20)?;
                if ip[0] != 0x45 || ip[9] != 17 {
                    return None;
                }
                let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
                let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                (IpAddr::V4(s), IpAddr::V4(d), l3 + 20)
            }
            0x86dd => {
                let ip = f.get(l3..l3 + 40)?;
                if ip[6] != 17 {
                    return None;
                }
                let s: [u8; 16] = ip[8..24].try_into().ok()?;
                let d: [u8; 16] = ip[24..40].try_into().ok()?;
                (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)), l3 + 40)
            }
            _ => return None,
        };
        let u = f.get(udp..udp + 8)?;
        let (sport, dport) = (u16::from_be_bytes([u[0], u[1]]), u16::from_be_bytes([u[2], u[3]]));
        let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if ulen < 8 || udp + ulen > f.len() {
            return None;
        }
        Some(Headers {
            src_mac,
            src: SocketAddr::new(src_ip, sport),
            dst_ip,
            dst_port: dport,
            vlan,
            tags,
            l3,
            udp,
            payload: udp + 8,
        })
    }
}

/// Turns a received frame (`h` its headers) around in place toward `to` through the
/// next hop `mac`, from our own MAC and address and UDP port `from_port`; the payload
/// stays as it is (the relay rewrote it already). False if the families differ.
pub fn readdress(f: &mut [u8], h: &Headers, mac: [u8; 6], from_port: u16, to: std::net::SocketAddr) -> bool {
    // Our MAC is the one the frame came to.
    f.copy_within(0..6, 6);
    f[0..6].copy_from_slice(&mac);
    match to.ip() {
        std::net::IpAddr::V4(d) if h.dst_ip.is_ipv4() => {
            f.copy_within(h.l3 + 16..h.l3 + 20, h.l3 + 12);
            f[h.l3 + 16..h.l3 + 20].copy_from_slice(&d.octets());
            f[h.l3 + 8] = 64;
        }
        std::net::IpAddr::V6(d) if h.dst_ip.is_ipv6() => {
            f.copy_within(h.l3 + 24..h.l3 + 40, h.l3 + 8);
            f[h.l3 + 24..h.l3 + 40].copy_from_slice(&d.octets());
            f[h.l3 + 7] = 64;
        }
        _ => return false,
    }
    f[h.udp..h.udp + 2].copy_from_slice(&from_port.to_be_bytes());
    f[h.udp + 2..h.udp + 4].copy_from_slice(&to.port().to_be_bytes());
    fix_checksums(f, h.l3)
}

/// The internet checksum (RFC 1071) of `data`, folded into `sum`.
fn ones_complement(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recomputes the IPv4 header checksum and the UDP checksum of a frame (Ethernet, then
/// IPv4 without options or IPv6, then UDP; `l3` the IP header's offset). The veth peer's
/// checksum offload leaves the UDP checksum unfinished in frames AF_XDP receives, so a
/// frame sent on must have it computed. False if the frame is not such a packet.
pub fn fix_checksums(frame: &mut [u8], l3: usize) -> bool {
    let Some(version) = frame.get(l3).map(|b| b >> 4) else { return false };
    let (udp_at, pseudo) = match version {
        4 => {
            let Some(ip) = frame.get_mut(l3..l3 + 20) else { return false };
            ip[10] = 0;
            ip[11] = 0;
            let c = fold(ones_complement(0, ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut sum = ones_complement(0, &ip[12..20]);
            sum += u32::from(ip[9]);
            (l3 + 20, sum)
        }
        6 => {
            let Some(ip) = frame.get(l3..l3 + 40) else { return false };
            let mut sum = ones_complement(0, &ip[8..40]);
            sum += u32::from(ip[6]);
            (l3 + 40, sum)
        }
        _ => return false,
    };
    let Some(udp_len) = frame.get(udp_at + 4..udp_at + 6).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
        return false;
    };
    let Some(udp) = frame.get_mut(udp_at..udp_at + udp_len) else { return false };
    if udp_len < 8 {
        return false;
    }
    udp[6] = 0;
    udp[7] = 0;
    let c = fold(ones_complement(pseudo + udp_len as u32, udp));
    // 0 means "no checksum" in IPv4 and is invalid in IPv6: it is sent as 0xffff.
    let c = if c == 0 { 0xffff } else { c };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_rfc1071_and_a_known_ipv4_udp_packet() {
        // 192.0.2.1:1234 -> 192.0.2.2:5678, payload "hi", TTL 64: checksums computed by
        // hand from RFC 791 / RFC 768 (IPv4 header 0xb6c7... recomputed below).
        let mut f = vec![0u8; 14];
        f.extend([0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend([0x04, 0xd2, 0x16, 0x2e, 0, 10, 0, 0, b'h', b'i']);
        assert!(fix_checksums(&mut f, 14));
        // The sums of the results, with their checksums, fold to zero.
        assert_eq!(fold(ones_complement(0, &f[14..34])), 0, "IPv4 header");
        let mut pseudo = ones_complement(0, &f[26..34]) + 17 + 10;
        pseudo = ones_complement(pseudo, &f[34..44]);
        assert_eq!(fold(pseudo), 0, "UDP");
        assert!(!fix_checksums(&mut [0u8; 20], 14), "too short");
    }
}

#[cfg(test)]
mod strangers {
    //! Frames on the media ports come from anyone: whatever the bytes, parsing and
    //! turning a frame around never panic.
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_frame_parses_or_is_refused_without_a_panic(mut f in proptest::collection::vec(any::<u8>(), 0..200),
                                                          v6 in any::<bool>(), tagged in any::<bool>()) {
            // Often a plausible header, so the deeper checks are reached too.
            if f.len() > 60 {
                let (ty, at) = if tagged { (&[0x81u8, 0x00][..], 16) } else { (&[][..], 12) };
                f[12..12 + ty.len()].copy_from_slice(ty);
                f[at..at + 2].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
                f[at + 2] = if v6 { 0x60 } else { 0x45 };
            }
            if let Some(h) = Headers::parse(&f) {
                prop_assert!(h.payload <= f.len());
                let to = if v6 { "[fd00::1]:4000".parse().unwrap() } else { "192.0.2.1:4000".parse().unwrap() };
                readdress(&mut f, &h, [1; 6], 20000, to);
            }
            fix_checksums(&mut f, 14);
        }
    }
}
