//! One BPF ring buffer per CPU. A ring shared by every CPU costs each event the ring's
//! lock and its position's cache lines, fetched from whichever CPU wrote last: with a
//! traced writer on each of two CPUs, a write's exit program took 625-692 ns with one
//! ring and 452-484 ns with one per CPU (430-520 ns either way from a single CPU), and
//! the contention grows with the CPUs. With a ring per CPU, a program only touches lines
//! its own CPU wrote. The programs find their CPU's ring in the `rings` array of maps;
//! the writer puts the events back in time order ([`super::order::TimeOrder`]).

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, OpenMapMut};

/// The smallest ring: a CPU that takes a burst alone (etcd's WAL writes, say) still
/// holds the 50 ms between drains of 80 MB/s, on a machine with many CPUs too.
const MIN_RING_BYTES: u64 = 4 << 20;

/// The per-CPU rings, created before the programs load (the first one is the template
/// the kernel checks the others against) and installed in the array after.
pub struct CpuRings {
    maps: Vec<MapHandle>,
}

impl CpuRings {
    /// `total_mb` shared out over `ncpus` rings, each a power of two.
    pub fn create(total_mb: u32, ncpus: u32) -> Result<CpuRings> {
        let bytes = ring_bytes(total_mb, ncpus);
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let maps = (0..ncpus.max(1))
            .map(|cpu| {
                MapHandle::create(
                    MapType::RingBuf,
                    Some(format!("ring_cpu{cpu}")),
                    0,
                    0,
                    bytes,
                    &opts,
                )
                .with_context(|| format!("creating the ring buffer of CPU {cpu} ({bytes} bytes)"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuRings { maps })
    }

    /// Before loading: size the array and give it the rings' shape.
    pub fn prepare(&self, rings: &mut OpenMapMut<'_>) -> Result<()> {
        rings.set_max_entries(self.maps.len() as u32)?;
        rings.set_inner_map_fd(self.maps[0].as_fd())?;
        Ok(())
    }

    /// After loading: put each CPU's ring in its slot.
    pub fn install(&self, rings: &impl MapCore) -> Result<()> {
        for (cpu, map) in self.maps.iter().enumerate() {
            let fd = map.as_fd().as_raw_fd() as u32;
            rings
                .update(
                    &(cpu as u32).to_ne_bytes(),
                    &fd.to_ne_bytes(),
                    MapFlags::ANY,
                )
                .with_context(|| format!("installing the ring buffer of CPU {cpu}"))?;
        }
        Ok(())
    }

    pub fn maps(&self) -> &[MapHandle] {
        &self.maps
    }
}

/// Bytes per ring: the total over the CPUs, rounded down to a power of two, at least
/// [`MIN_RING_BYTES`].
fn ring_bytes(total_mb: u32, ncpus: u32) -> u32 {
    let share = (u64::from(total_mb) << 20) / u64::from(ncpus.max(1));
    let pow2 = if share == 0 {
        0
    } else {
        1u64 << (63 - share.leading_zeros())
    };
    pow2.clamp(MIN_RING_BYTES, 1 << 30) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_shared_out_in_powers_of_two() {
        assert_eq!(ring_bytes(32, 2), 16 << 20);
        assert_eq!(ring_bytes(32, 3), 8 << 20);
        assert_eq!(ring_bytes(32, 1), 32 << 20);
        assert_eq!(ring_bytes(32, 64), 4 << 20);
        assert_eq!(ring_bytes(1, 0), 4 << 20);
    }
}
