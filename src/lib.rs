//! etcd-trace: records what etcd does from the kernel (eBPF) and analyses the capture
//! offline. The direction of imports is one-way: cli → analyze → decode → capture.

pub mod capture;
pub mod decode;
