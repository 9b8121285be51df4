//! Everything the commands print goes through here: tables or JSON on stdout, diagnostics on
//! stderr, and errors, which print one way: `error: ` and the message with its causes, never a
//! backtrace (whatever `RUST_BACKTRACE` says: a user's mistake is not a crash).

use sgwall::error_text::with_causes;

/// Prints `value` as pretty JSON, or as the text `render` makes of it.
pub fn report<T: serde::Serialize>(
    value: &T,
    json: bool,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", render(value));
    }
    Ok(())
}

/// Prints one line on stdout.
pub fn line(text: &str) {
    println!("{text}");
}

/// Prints text on stdout as it is (it ends its own lines).
pub fn text(text: &str) {
    print!("{text}");
}

/// Prints one diagnostic line on stderr (warnings, config errors, notes).
pub fn diagnostic(text: &str) {
    eprintln!("{text}");
}

/// Prints a failure: `error: ` and the message, with the causes it does not already say.
pub fn error(error: &anyhow::Error) {
    eprintln!("error: {}", with_causes(error.as_ref()));
}
