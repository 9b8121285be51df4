//! Errors as text, one way everywhere (the CLI's `error: …`, the agent's log and events,
//! `state.json`): the message, then each cause in its chain that the message does not already
//! say. Many messages name their cause inline (`{path}: {source}`); the chain adds what the
//! others hide behind `#[source]`.

use std::error::Error;

pub fn with_causes(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let said = current.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("opening {path}: {source}")]
        Inline {
            path: &'static str,
            source: std::io::Error,
        },
        #[error("writing map SGW_CIDRS failed")]
        Hidden {
            #[source]
            source: std::io::Error,
        },
    }

    #[test]
    fn causes_are_said_once() {
        let io = || std::io::Error::other("no space left");
        assert_eq!(
            with_causes(&Outer::Inline {
                path: "/x",
                source: io()
            }),
            "opening /x: no space left"
        );
        assert_eq!(
            with_causes(&Outer::Hidden { source: io() }),
            "writing map SGW_CIDRS failed: no space left"
        );
    }
}
