//! The process-per-action contender of the benchmarks: reads one chat event on stdin,
//! runs the triage action, and prints `{"output": …, "effects": […]}` on stdout.
//! The "host" is this process's parent, which reads the effects from the output.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("fluxo-triage-process: reading stdin: {error}");
        return ExitCode::FAILURE;
    }
    let decision = match fluxo_triage::triage(&input) {
        Ok(decision) => decision,
        Err(error) => {
            eprintln!("fluxo-triage-process: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = serde_json::json!({
        "output": decision.output(),
        "effects": [
            ["set_field", fluxo_triage::PRIORITY_FIELD, decision.priority],
            ["add_tag", fluxo_triage::SUPPORT_TAG],
        ],
    });
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{report}").is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
