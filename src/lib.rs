//! etcd-trace: records what etcd does from the kernel (eBPF) and analyses the capture
//! offline. The direction of imports is one-way: commands → analyze → decode → capture.

pub mod analyze;
/// `record --mode api`: a recorder that needs no eBPF, only etcd's API.
pub mod api_recorder;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod decode;
/// The fuzz targets' bodies, shared by `fuzz/` and the corpus replay test.
#[doc(hidden)]
pub mod fuzzing;
pub mod output;
#[cfg(all(feature = "record", target_os = "linux"))]
pub mod record;
pub mod redact;
pub mod reproduce;
#[cfg(all(feature = "record", target_os = "linux"))]
pub mod sandbox;
#[cfg(test)]
mod test_rng;
pub mod units;
