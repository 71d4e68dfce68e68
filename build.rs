//! Compiles bpf/*.bpf.c into a libbpf skeleton when the `record` feature is on (Linux
//! only). The analysis-only build needs neither clang nor libelf.

fn main() {
    println!("cargo:rerun-if-changed=bpf");
    #[cfg(feature = "record")]
    record::build_skeleton();
}

#[cfg(feature = "record")]
mod record {
    use std::env;
    use std::path::PathBuf;

    pub fn build_skeleton() {
        if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
            panic!("the `record` feature needs Linux; build with --no-default-features for analysis only");
        }
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"))
            .join("etcd_trace.skel.rs");
        libbpf_cargo::SkeletonBuilder::new()
            .source("bpf/etcd_trace.bpf.c")
            .clang_args(["-Wall", "-Wno-unused-function", "-Ibpf"])
            .build_and_generate(&out)
            .unwrap_or_else(|e| {
                panic!(
                    "compiling bpf/etcd_trace.bpf.c failed: {e:#}\n\
                     The recorder needs clang, libelf-dev, zlib1g-dev, pkg-config and make \
                     (Debian: apt-get install clang libelf-dev zlib1g-dev pkg-config make);\n\
                     or build the analysis-only binary with --no-default-features."
                )
            });
    }
}
