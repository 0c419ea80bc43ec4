fn main() -> std::process::ExitCode {
    lucent::cli::main()
}
