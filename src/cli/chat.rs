//! `visualglm chat [IMAGE]`: an interactive conversation with streaming answers.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use visualglm_vision::decode::load_image;

use super::model_args::{GenerationArgs, ModelArgs};

/// Arguments of `visualglm chat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image to talk about (another can be loaded with `/image PATH`).
    image: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generation: GenerationArgs,
}

const HELP: &str = "commands: /image PATH (load another image), /clear (forget the history), \
                    /quit (or Ctrl-D)";

/// Runs `chat`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let captioner = args.model.load()?;
    let mut session = captioner.chat(args.generation.english(captioner.defaults()));
    if let Some(path) = &args.image {
        let image = load_image(path, &Default::default())
            .with_context(|| format!("cannot open {}", path.display()))?;
        session.set_image(&image)?;
    }
    let config = args.generation.config(captioner.defaults())?;
    eprintln!("{HELP}");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut line = String::new();
    loop {
        print!("> ");
        stdout.flush()?;
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        match input {
            "/quit" | "/exit" => break,
            "/clear" => {
                session.clear_history();
                eprintln!("(history cleared)");
                continue;
            }
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        if let Some(path) = input.strip_prefix("/image") {
            let path = path.trim();
            match load_image(path, &Default::default()) {
                Ok(image) => {
                    session.set_image(&image)?;
                    eprintln!("(image loaded, history cleared)");
                }
                Err(e) => eprintln!("error: {e}"),
            }
            continue;
        }
        let result = session.ask(input, &config, &mut |piece| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        });
        println!();
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
    }
    Ok(())
}
