//! Running external commands (`iptables-restore`, `nft`, `ip`) through a small trait, so the apply
//! logic can be tested with a [`Recorder`] and runs for real with [`System`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// One command: a program, its arguments and what to feed on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program name, looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Text written to its stdin, if any.
    pub stdin: Option<String>,
}

impl Cmd {
    /// A command without stdin.
    pub fn new(program: &str, args: &[&str]) -> Cmd {
        Cmd { program: program.to_owned(), args: args.iter().map(|a| (*a).to_owned()).collect(), stdin: None }
    }

    /// The same command with `input` on stdin.
    pub fn with_stdin(mut self, input: String) -> Cmd {
        self.stdin = Some(input);
        self
    }

    /// The command line, as a shell would show it.
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// The exit status (-1 when killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Errors starting a command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed (not in `PATH`).
    #[error("{program} not found in PATH")]
    NotFound {
        /// The program name.
        program: String,
    },
    /// Any other failure to start it or talk to it.
    #[error("cannot run {program}: {source}")]
    Io {
        /// The program name.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Runs commands. Implemented by [`System`] (real processes) and [`Recorder`] (tests).
pub trait Runner {
    /// Runs `cmd` to completion and returns its output; a non-zero exit is not an error here.
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError>;
}

/// Runs real processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Runner for System {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CommandError::NotFound { program: cmd.program.clone() }
            } else {
                CommandError::Io { program: cmd.program.clone(), source }
            }
        };
        let mut child = Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io)?;
        if let (Some(input), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).map_err(io)?;
        }
        let out = child.wait_with_output().map_err(io)?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Records every command and answers with scripted outputs (or an empty success).
#[derive(Debug, Default)]
pub struct Recorder {
    commands: RefCell<Vec<Cmd>>,
    answers: RefCell<VecDeque<(String, Output)>>,
}

impl Recorder {
    /// A recorder that answers every command with an empty success.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Queues `output` as the answer to the next command whose line starts with `prefix`.
    pub fn answer(&self, prefix: &str, output: Output) {
        self.answers.borrow_mut().push_back((prefix.to_owned(), output));
    }

    /// The commands run so far.
    pub fn commands(&self) -> Vec<Cmd> {
        self.commands.borrow().clone()
    }

    /// The transcript as Istio's test stub writes it: each command line, except that commands fed
    /// on stdin (the restore inputs) are shown as their input.
    pub fn transcript(&self) -> String {
        self.commands
            .borrow()
            .iter()
            .map(|c| match &c.stdin {
                Some(input) => input.trim_end().to_owned(),
                None => c.line(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Runner for Recorder {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        self.commands.borrow_mut().push(cmd.clone());
        let line = cmd.line();
        let mut answers = self.answers.borrow_mut();
        if let Some(i) = answers.iter().position(|(p, _)| line.starts_with(p.as_str()))
            && let Some((_, out)) = answers.remove(i)
        {
            return Ok(out);
        }
        Ok(Output::default())
    }
}
