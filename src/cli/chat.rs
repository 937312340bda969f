//! `visualglm chat [IMAGE]`: an interactive conversation with streaming answers.

mod input;
mod interrupt;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Context;
use visualglm::generate::Flow;
use visualglm_vision::decode::load_image;

use super::model_args::{GenerationArgs, ModelArgs};
use input::{Input, Read};
use interrupt::Interrupt;

/// Arguments of `visualglm chat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to talk about, in order (`/image PATH` replaces them, `/add PATH` adds one).
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generation: GenerationArgs,
}

const HELP: &str = "commands: /image PATH (talk about this image instead), /add PATH (add an \
                    image to the conversation), /clear (forget the history), /help, /quit (or \
                    Ctrl-D); Ctrl-C stops an answer; start a question with // to begin it \
                    with /";

const MANY_IMAGES: &str = "(note: the released weights saw one image per prompt; answers \
                           about several need a model fine-tuned on such prompts)";

/// One line typed at the prompt.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    /// A question for the model.
    Ask(&'a str),
    /// `/image PATH`: replaces the images.
    Image(&'a str),
    /// `/add PATH`: adds an image.
    Add(&'a str),
    /// `/clear`.
    Clear,
    /// `/help`.
    Help,
    /// `/quit` or `/exit`.
    Quit,
    /// Anything else starting with `/`: refused, with what went wrong.
    Refused(String),
}

impl<'a> Command<'a> {
    /// Parses a non-empty, trimmed line.
    fn parse(line: &'a str) -> Self {
        if line.starts_with("//") {
            return Command::Ask(line.get(1..).unwrap_or(line));
        }
        let Some(command) = line.strip_prefix('/') else {
            return Command::Ask(line);
        };
        let (name, rest) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, r)| (n, r.trim()));
        match (name, rest) {
            ("quit" | "exit", "") => Command::Quit,
            ("clear", "") => Command::Clear,
            ("help", "") => Command::Help,
            ("image", "") => Command::Refused("/image needs a path: /image PATH".into()),
            ("image", path) => Command::Image(path),
            ("add", "") => Command::Refused("/add needs a path: /add PATH".into()),
            ("add", path) => Command::Add(path),
            ("quit" | "exit" | "clear" | "help", _) => {
                Command::Refused(format!("/{name} takes no argument"))
            }
            _ => Command::Refused(format!("unknown command /{name}")),
        }
    }
}

/// Runs `chat`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let captioner = args.model.load()?;
    let mut session = captioner.chat(args.generation.english(captioner.defaults()));
    for path in &args.images {
        let image = load_image(path, &Default::default())
            .with_context(|| format!("cannot open {}", path.display()))?;
        session.add_image(&image)?;
    }
    if args.images.len() > 1 {
        eprintln!("{MANY_IMAGES}");
    }
    let config = args.generation.config(captioner.defaults())?;
    let interrupt = Interrupt::install()?;
    let mut input = Input::open();
    eprintln!("{HELP}");
    loop {
        let line = match input.read("> ")? {
            Read::Line(line) => line,
            Read::Interrupted => continue,
            Read::Eof => {
                // The shell's prompt then starts on a line of its own.
                println!();
                break;
            }
        };
        let question = match Command::parse(line.trim()) {
            Command::Ask("") => continue,
            Command::Ask(question) => question,
            Command::Quit => break,
            Command::Clear => {
                session.clear_history();
                eprintln!("(history cleared)");
                continue;
            }
            Command::Help => {
                eprintln!("{HELP}");
                continue;
            }
            Command::Image(path) => {
                let loaded = load_image(path, &Default::default())
                    .map_err(anyhow::Error::from)
                    .and_then(|image| Ok(session.set_image(&image)?));
                match loaded {
                    Ok(()) => eprintln!("(image loaded, history cleared)"),
                    Err(e) => eprintln!("error: {}", super::output::error_message(&e)),
                }
                continue;
            }
            Command::Add(path) => {
                let loaded = load_image(path, &Default::default())
                    .map_err(anyhow::Error::from)
                    .and_then(|image| Ok(session.add_image(&image)?));
                match loaded {
                    Ok(()) => {
                        eprintln!("(image {} added)", session.image_count());
                        if session.image_count() == 2 {
                            eprintln!("{MANY_IMAGES}");
                        }
                    }
                    Err(e) => eprintln!("error: {}", super::output::error_message(&e)),
                }
                continue;
            }
            Command::Refused(why) => {
                eprintln!("{why} (not sent to the model); {HELP}");
                continue;
            }
        };
        let (result, stopped) = interrupt.during(|stop| {
            session.ask(question, &config, &mut |piece| {
                print!("{piece}");
                let _ = std::io::stdout().flush();
                if stop.load(Ordering::SeqCst) {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })
        });
        println!();
        match result {
            Err(e) => eprintln!("error: {e}"),
            Ok(_) if stopped => eprintln!("(answer stopped; what was said stays in the history)"),
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_questions_and_commands() {
        assert_eq!(Command::parse("what is it?"), Command::Ask("what is it?"));
        assert_eq!(Command::parse("//etc?"), Command::Ask("/etc?"));
        assert_eq!(Command::parse("/quit"), Command::Quit);
        assert_eq!(Command::parse("/exit"), Command::Quit);
        assert_eq!(Command::parse("/clear"), Command::Clear);
        assert_eq!(Command::parse("/image  a b.png"), Command::Image("a b.png"));
        assert_eq!(Command::parse("/add c.png"), Command::Add("c.png"));
        for refused in [
            "/imagex.png",
            "/image",
            "/add",
            "/foo bar",
            "/",
            "/clear now",
        ] {
            assert!(
                matches!(Command::parse(refused), Command::Refused(_)),
                "{refused}"
            );
        }
    }
}
