//! A pcapng writer: the few block types an export needs (section header, interface
//! description, enhanced packet, each with comments), and raw IPv4/IPv6 + TCP packets
//! rebuilt from a segment's header fields. Written by hand: the format is a handful of
//! little-endian blocks, and the pcap crates either only read it or pull in a packet
//! parser we do not need.
//!
//! Reference: the pcapng draft (IETF opsawg), sections 4.1 (SHB), 4.2 (IDB), 4.3 (EPB).
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// LINKTYPE_RAW: each packet starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u16 = 101;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_HARDWARE: u16 = 2;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;

/// Writes one section: its header first, then interfaces and packets in any order (an
/// interface before its packets).
pub struct PcapngWriter<W: Write> {
    out: W,
    interfaces: u32,
}

impl<W: Write> PcapngWriter<W> {
    /// Start a section, with `comment` (the host, say) and the writing application.
    pub fn new(mut out: W, comment: &str, application: &str) -> io::Result<Self> {
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
        let mut opts = Options::default();
        opts.text(OPT_COMMENT, comment);
        opts.text(SHB_HARDWARE, std::env::consts::ARCH);
        opts.text(SHB_USERAPPL, application);
        write_block(&mut out, SHB, &body, &opts.finish())?;
        Ok(PcapngWriter { out, interfaces: 0 })
    }

    /// Describe an interface with nanosecond timestamps; its id for `packet`.
    pub fn interface(
        &mut self,
        linktype: u16,
        snaplen: u32,
        name: &str,
        comment: &str,
    ) -> io::Result<u32> {
        let mut body = Vec::with_capacity(8);
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&snaplen.to_le_bytes());
        let mut opts = Options::default();
        opts.text(IF_NAME, name);
        opts.text(OPT_COMMENT, comment);
        opts.raw(IF_TSRESOL, &[9]);
        write_block(&mut self.out, IDB, &body, &opts.finish())?;
        let id = self.interfaces;
        self.interfaces += 1;
        Ok(id)
    }

    /// One packet of `interface` at `ts_ns` (ns since the Unix epoch): `data` as
    /// captured, `orig_len` on the wire.
    pub fn packet(
        &mut self,
        interface: u32,
        ts_ns: u64,
        data: &[u8],
        orig_len: u32,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut body = Vec::with_capacity(20 + data.len() + 3);
        body.extend_from_slice(&interface.to_le_bytes());
        body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        body.extend_from_slice(&caplen.to_le_bytes());
        body.extend_from_slice(&orig_len.max(caplen).to_le_bytes());
        body.extend_from_slice(data);
        pad4(&mut body);
        let mut opts = Options::default();
        if let Some(c) = comment {
            opts.text(OPT_COMMENT, c);
        }
        write_block(&mut self.out, EPB, &body, &opts.finish())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[derive(Default)]
struct Options(Vec<u8>);

impl Options {
    fn raw(&mut self, code: u16, value: &[u8]) {
        // An option's length is 16 bits: longer texts are cut.
        let value = &value[..value.len().min(0xfff0)];
        self.0.extend_from_slice(&code.to_le_bytes());
        self.0
            .extend_from_slice(&(value.len() as u16).to_le_bytes());
        self.0.extend_from_slice(value);
        pad4(&mut self.0);
    }

    fn text(&mut self, code: u16, value: &str) {
        if !value.is_empty() {
            self.raw(code, value.as_bytes());
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if !self.0.is_empty() {
            self.0.extend_from_slice(&OPT_END.to_le_bytes());
            self.0.extend_from_slice(&0u16.to_le_bytes());
        }
        self.0
    }
}

fn pad4(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn write_block(out: &mut impl Write, kind: u32, body: &[u8], options: &[u8]) -> io::Result<()> {
    let total = u32::try_from(12 + body.len() + options.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block too large"))?;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(options)?;
    out.write_all(&total.to_le_bytes())
}

/// A TCP segment's header fields, with the payload bytes kept of `payload_len`.
pub struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: &'a [u8],
    pub payload_len: u32,
}

/// Largest TCP payload one rebuilt IPv4 packet can say it carries.
pub const MAX_SEGMENT_PAYLOAD: u32 = 65_535 - 60;

impl TcpSegment<'_> {
    /// The packet as an IPv4 (both ends IPv4, or IPv4-mapped) or IPv6 datagram: the
    /// bytes to write and the length on the wire. The TCP checksum is right when the
    /// whole payload was kept, 0 otherwise.
    pub fn to_ip_packet(&self) -> (Vec<u8>, u32) {
        let payload = &self.payload[..self.payload.len().min(self.payload_len as usize)];
        let tcp_len = 20 + self.payload_len.max(payload.len() as u32);
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&self.src.port().to_be_bytes());
        tcp.extend_from_slice(&self.dst.port().to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        tcp.push(5 << 4);
        tcp.push(self.flags);
        tcp.extend_from_slice(&self.window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(payload);
        let whole = payload.len() as u32 == self.payload_len;
        let mut out;
        match (v4(self.src.ip()), v4(self.dst.ip())) {
            (Some(s), Some(d)) => {
                out = Vec::with_capacity(20 + tcp.len());
                let total = (20 + tcp_len).min(65_535) as u16;
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                let c = checksum(0, &out[..20]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
                if whole {
                    let mut pseudo = Vec::with_capacity(12);
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                    pseudo.extend_from_slice(&[0, 6]);
                    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
                    let c = checksum(sum(0, &pseudo), &tcp);
                    tcp[16..18].copy_from_slice(&c.to_be_bytes());
                }
                out.extend_from_slice(&tcp);
                (out, 20 + tcp_len)
            }
            _ => {
                let (s, d) = (v6(self.src.ip()), v6(self.dst.ip()));
                out = Vec::with_capacity(40 + tcp.len());
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&(tcp_len.min(65_535) as u16).to_be_bytes());
                out.extend_from_slice(&[6, 64]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                if whole {
                    let mut pseudo = Vec::with_capacity(40);
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
                    pseudo.extend_from_slice(&[0, 0, 0, 6]);
                    let c = checksum(sum(0, &pseudo), &tcp);
                    tcp[16..18].copy_from_slice(&c.to_be_bytes());
                }
                out.extend_from_slice(&tcp);
                (out, 40 + tcp_len)
            }
        }
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The ones'-complement sum of 16-bit words (an odd last byte padded with 0).
fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [last] = words.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn checksum(acc: u32, bytes: &[u8]) -> u16 {
    let mut s = sum(acc, bytes);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_framed_and_aligned() {
        let mut w = PcapngWriter::new(Vec::new(), "host a", "etcd-trace").unwrap();
        let id = w.interface(LINKTYPE_RAW, 256, "lo", "host a").unwrap();
        w.packet(id, 1_700_000_000_123_456_789, &[1, 2, 3], 10, Some("x"))
            .unwrap();
        let out = w.into_inner();
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < out.len() {
            let kind = u32::from_le_bytes(out[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(out[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let tail = u32::from_le_bytes(out[at + len - 4..at + len].try_into().unwrap());
            assert_eq!(tail as usize, len);
            kinds.push(kind);
            at += len;
        }
        assert_eq!(at, out.len());
        assert_eq!(kinds, [SHB, IDB, EPB]);
    }

    #[test]
    fn tcp_checksums_verify() {
        let seg = TcpSegment {
            src: "127.0.0.1:40000".parse().unwrap(),
            dst: "127.0.0.1:2379".parse().unwrap(),
            seq: 1,
            ack: 2,
            flags: 0x18,
            window: 512,
            payload: b"hello",
            payload_len: 5,
        };
        let (p, len) = seg.to_ip_packet();
        assert_eq!(len as usize, p.len());
        assert_eq!(checksum(0, &p[..20]), 0);
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 25]);
        assert_eq!(checksum(sum(0, &pseudo), &p[20..]), 0);
        let seg6 = TcpSegment {
            src: "[::1]:40000".parse().unwrap(),
            payload_len: 50,
            ..seg
        };
        let (p, len) = seg6.to_ip_packet();
        assert_eq!(p.len(), 40 + 20 + 5);
        assert_eq!(len, 40 + 20 + 50);
        assert_eq!(p[0] >> 4, 6);
    }
}
