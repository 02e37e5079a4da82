//! `cemiface`: the CemiFace-rs command line (the web server and, as they land, training, generation
//! and evaluation). All logic lives in the library; this file only hands over to it.

fn main() -> std::process::ExitCode {
    cemiface_server::cli::main()
}
