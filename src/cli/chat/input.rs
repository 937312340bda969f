//! Where `chat` reads its lines: a line editor with history (arrow keys, Ctrl-R, …) when
//! standard input is a terminal, plain lines otherwise, so that piping a script works.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

/// What one read gave.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// A line (without its newline).
    Line(String),
    /// Ctrl-C at the prompt: the line being typed was dropped.
    Interrupted,
    /// Ctrl-D on an empty line, or the end of the input.
    Eof,
}

/// The source of `chat`'s lines.
pub(super) enum Input {
    /// A terminal: rustyline, with the session's history.
    Terminal(Box<DefaultEditor>),
    /// A pipe or file: plain lines, the prompt printed on standard output.
    Plain(std::io::StdinLock<'static>),
}

impl Input {
    /// The line editor when standard input is a terminal (and rustyline can drive it), else
    /// plain lines.
    pub(super) fn open() -> Self {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            match DefaultEditor::new() {
                Ok(editor) => return Input::Terminal(Box::new(editor)),
                Err(e) => tracing::warn!("no line editing ({e}): reading plain lines"),
            }
        }
        Input::Plain(stdin.lock())
    }

    /// Shows `prompt` and reads one line.
    pub(super) fn read(&mut self, prompt: &str) -> anyhow::Result<Read> {
        match self {
            Input::Terminal(editor) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        // Only a duplicate of the last entry is refused: nothing to report.
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Ok(Read::Line(line))
                }
                Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
                Err(ReadlineError::Eof) => Ok(Read::Eof),
                Err(e) => Err(e).context("cannot read from the terminal"),
            },
            Input::Plain(stdin) => {
                let mut stdout = std::io::stdout();
                write!(stdout, "{prompt}")?;
                stdout.flush()?;
                let mut line = String::new();
                if stdin
                    .read_line(&mut line)
                    .context("cannot read standard input")?
                    == 0
                {
                    return Ok(Read::Eof);
                }
                let line = line.strip_suffix('\n').unwrap_or(&line);
                Ok(Read::Line(
                    line.strip_suffix('\r').unwrap_or(line).to_string(),
                ))
            }
        }
    }
}
