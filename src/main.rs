fn main() -> std::process::ExitCode {
    etcd_trace::commands::main()
}
