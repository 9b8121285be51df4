//! Loads the embedded datapath and prints each program's verified instruction count.
fn main() {
    let options = sgwall::datapath::loader::LoadOptions {
        verifier_log: std::env::var("VERBOSE")
            .is_ok()
            .then_some(aya::VerifierLogLevel::DEBUG | aya::VerifierLogLevel::STATS),
        ..Default::default()
    };
    let datapath = sgwall::datapath::loader::Datapath::load(&options);
    match datapath {
        Ok(datapath) => {
            for (name, program) in datapath.ebpf.programs() {
                let Ok(info) = program.info() else { continue };
                println!(
                    "{name}: verified {:?} insns, xlated {:?} bytes, jited {} bytes",
                    info.verified_instruction_count(),
                    info.size_translated(),
                    info.size_jitted()
                );
            }
        }
        Err(error) => {
            let text = format!("{error}");
            std::fs::write("/tmp/verifier.log", &text).ok();
            let lines: Vec<&str> = text.lines().collect();
            for line in lines.iter().take(3) {
                println!("{line}");
            }
            println!("...");
            for line in lines.iter().rev().take(25).rev() {
                println!("{line}");
            }
        }
    }
}
