//! The `nnc` command line: parses arguments, runs the library pipeline, prints reports and diagnostics.
//! Exit codes: 0 success, 1 errors in the model, 2 usage errors (bad arguments, unreadable file).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use nnc::{diag, ir, passes, report, Compilation, Options};

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "A declarative neural-network compiler",
    propagate_version = true
)]
struct Cli {
    /// When to color diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a .nn file; silent with exit code 0 when it is fine.
    Check { file: PathBuf },
    /// Print a Keras-style summary: layers, output shapes, parameters, MACs and memory.
    Summary {
        file: PathBuf,
        /// Batch size for shapes, MACs and memory.
        #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch: u64,
        /// Print JSON for tools instead of a table (keys in docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Print the graph IR as text (one line per node) or as Graphviz DOT.
    Dump {
        file: PathBuf,
        /// Stop after this pass: `lower` (as built) or a pass name such as `dce`. Default: all passes.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Deeply nested models recurse in the evaluator; give it a generous stack.
    let child = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || run(cli));
    match child.map(|h| h.join()) {
        Ok(Ok(code)) => ExitCode::from(code),
        _ => {
            eprintln!("error: internal compiler error (nnc crashed); please report this with the .nn file");
            ExitCode::from(101)
        }
    }
}

fn run(cli: Cli) -> u8 {
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal(),
    };
    let (file, options, allow_no_model) = match &cli.command {
        Command::Check { file } => (
            file,
            Options {
                until: None,
                allow_no_model: true,
            },
            true,
        ),
        Command::Summary { file, .. } => (file, Options::default(), false),
        Command::Dump { file, after, .. } => {
            if let Some(a) = after {
                if !passes::pass_names().contains(&a.as_str()) {
                    eprintln!(
                        "error: unknown pass `{a}` for --after; passes: {}",
                        passes::pass_names().join(", ")
                    );
                    return 2;
                }
            }
            (
                file,
                Options {
                    until: after.clone(),
                    allow_no_model: false,
                },
                false,
            )
        }
    };
    let _ = allow_no_model;
    if let Err(e) = std::fs::metadata(file).and_then(|m| {
        if m.is_file() {
            Ok(())
        } else {
            Err(std::io::Error::other("not a file"))
        }
    }) {
        eprintln!("error: cannot read `{}`: {e}", file.display());
        return 2;
    }
    let c = nnc::compile(file, &options);
    eprint!("{}", diag::render(&c.sources, &c.diags, color));
    let Some(graph) = c.graph.as_ref() else {
        return exit_code(&c);
    };
    match &cli.command {
        Command::Check { .. } => {}
        Command::Summary { batch, json, .. } => {
            let stats = passes::count(graph, *batch);
            if *json {
                print!("{}", report::summary_json(graph, &stats));
            } else {
                print!("{}", report::summary_table(graph, &stats));
            }
        }
        Command::Dump { format, .. } => match format {
            Format::Text => print!("{}", ir::dump::to_text(graph)),
            Format::Dot => print!("{}", ir::dump::to_dot(graph)),
        },
    }
    exit_code(&c)
}

fn exit_code(c: &Compilation) -> u8 {
    if c.has_errors() {
        1
    } else {
        0
    }
}
