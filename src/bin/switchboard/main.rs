//! `switchboard`: publish, subscribe, request, reply and benchmark against any backend URL.
//!
//! ```text
//! switchboard --url nats://127.0.0.1:4222 reply greet --fixed hi    # answer requests
//! switchboard --url nats://127.0.0.1:4222 req greet hello           # prints: hi
//! switchboard --url kafka://127.0.0.1:9092 sub 'orders.*'           # print events
//! switchboard --url kafka://127.0.0.1:9092 pub orders.placed '{"id":1}'
//! switchboard --url http://127.0.0.1:0 bench --mode request         # rates against itself
//! SWITCHBOARD_CONFIG=shop.toml switchboard asyncapi                 # the route table as AsyncAPI 3.0
//! switchboard outbox groups data/outbox.db                           # queue groups an outbox remembers
//! switchboard outbox forget data/outbox.db billing                   # forget a service gone for good
//! switchboard --url nats://127.0.0.1:4222 dead-letters keep --store dl.db   # keep dead letters
//! switchboard dead-letters list --store dl.db                        # what was given up on, and why
//! switchboard --url nats://127.0.0.1:4222 dead-letters replay --store dl.db 3
//! ```

mod bench;
mod dead_letters;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchboard::{Bus, Message};

/// Talk to a running system over any switchboard backend.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    /// Backend URL (memory://, http://, grpc://, nats://, kafka://). Without it the
    /// settings come from the environment like any service's:
    /// SWITCHBOARD_CONFIG, SWITCHBOARD_URL[_<SERVICE>], SWITCHBOARD_STYLE.
    #[arg(long, global = true)]
    url: Option<String>,
    /// The service name whose settings to load (SWITCHBOARD_URL_<SERVICE>) when --url is not given.
    #[arg(long, global = true, default_value = "cli")]
    service: String,
    #[command(subcommand)]
    command: Command,
}

/// What to do with an outbox file (feature `outbox`; the service using it must be stopped).
#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List the queue groups the file remembers, when each was last seen, and what it holds for each.
    Groups {
        /// The outbox's SQLite file (`[outbox] path`).
        path: std::path::PathBuf,
    },
    /// Forget a queue group (a service gone for good): the next start dead-letters what was held for it.
    Forget {
        /// The outbox's SQLite file (`[outbox] path`).
        path: std::path::PathBuf,
        /// The group's name (the service's name).
        group: String,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the AsyncAPI 3.0 document of the settings' route table (no backend is contacted).
    Asyncapi {
        /// The document's title; the service name by default.
        #[arg(long)]
        title: Option<String>,
    },
    /// Inspect or edit an outbox file (no backend is contacted).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Keep dead letters in a store, list, show, replay or purge them.
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLettersCommand),
    /// Publish an event.
    Pub {
        /// Subject to publish to.
        subject: String,
        /// Payload (UTF-8 text).
        payload: String,
        /// Header as NAME=VALUE (repeatable).
        #[arg(long = "header", short = 'H', value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// How many times to publish it.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Print events as they arrive: `SUBJECT PAYLOAD` per line.
    Sub {
        /// Subject or pattern (`orders.*`, `orders.>`).
        subject: String,
        /// Join this queue group.
        #[arg(long)]
        group: Option<String>,
        /// Also print each event's headers, one `  NAME: VALUE` line each.
        #[arg(long)]
        headers: bool,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send a request and print the reply.
    Req {
        /// Subject to send to.
        subject: String,
        /// Payload (UTF-8 text).
        payload: String,
        /// Header as NAME=VALUE (repeatable).
        #[arg(long = "header", short = 'H', value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// How long to wait for the reply (`500ms`, `5s`).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Answer requests: echo the payload, or reply with fixed text.
    Reply {
        /// Subject or pattern to answer.
        subject: String,
        /// Reply with this text instead of echoing.
        #[arg(long)]
        fixed: Option<String>,
        /// Queue group (default `switchboard-cli`).
        #[arg(long, default_value = "switchboard-cli")]
        group: String,
        /// Exit after answering this many requests.
        #[arg(long)]
        count: Option<u64>,
        /// Print no line per request (failures to reply are still printed).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Measure request/reply or publish/subscribe rates against the URL.
    Bench(bench::BenchArgs),
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.trim().to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))
}

/// Like `eprintln!`, but a closed stderr (the reader went away) is not a
/// reason to panic: a responder keeps answering whoever still listens.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| err.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let connect = async || match &cli.url {
        Some(url) => switchboard::connect(url).await,
        None => switchboard::Settings::load(&cli.service)?.connect().await,
    };
    let command = match cli.command {
        Command::Asyncapi { title } => {
            let settings = match &cli.url {
                Some(url) => switchboard::Settings::from_toml(&format!(
                    "[transports.default]\nurl = {}",
                    toml_string(url)
                ))?,
                None => switchboard::Settings::load(&cli.service)?,
            };
            let document = settings.asyncapi(title.as_deref().unwrap_or(&cli.service))?;
            println!("{}", serde_json::to_string_pretty(&document)?);
            return Ok(());
        }
        Command::Outbox(command) => return outbox(command).await,
        Command::DeadLetters(command) => return dead_letters::run(command, connect).await,
        command => command,
    };
    let bus = connect().await?;
    let outcome = self::command(&bus, command).await;
    bus.close().await?;
    outcome
}

#[cfg(feature = "outbox")]
async fn outbox(command: OutboxCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        OutboxCommand::Groups { path } => {
            for group in switchboard::outbox::remembered_groups(&path).await? {
                let seen = std::time::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(group.seen_ms).unwrap_or(0));
                println!(
                    "{} on {}: last seen {}, {} event(s) held",
                    group.name,
                    group.pattern,
                    humantime::format_rfc3339_seconds(seen),
                    group.held
                );
            }
        }
        OutboxCommand::Forget { path, group } => {
            let forgotten = switchboard::outbox::forget_group(&path, &group).await?;
            if forgotten == 0 {
                return Err(
                    format!("{} remembers no queue group `{group}`", path.display()).into(),
                );
            }
            say!("forgot `{group}` on {forgotten} subject pattern(s); what was held for it is dead-lettered at the next start");
        }
    }
    Ok(())
}

#[cfg(not(feature = "outbox"))]
async fn outbox(_: OutboxCommand) -> Result<(), Box<dyn std::error::Error>> {
    Err("this switchboard was built without the `outbox` feature".into())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// memory:// is one process's bus: a `sub` or `reply` there hears only itself.
fn warn_if_in_process(bus: &Bus) {
    if bus.backend() == "memory" {
        say!(
            "note: memory:// only reaches this same process; \
             other processes cannot publish or send to it (use nats://, kafka://, http:// or grpc://)"
        );
    }
}

fn message(payload: String, headers: Vec<(String, String)>) -> Message {
    headers
        .into_iter()
        .fold(Message::new(payload), |message, (name, value)| {
            message.with_header(name, value)
        })
}

async fn command(bus: &Bus, command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Pub {
            subject,
            payload,
            headers,
            count,
        } => {
            let event = message(payload, headers);
            for _ in 0..count {
                bus.publish(&subject, event.clone()).await?;
            }
            say!("published {count} to {subject}");
        }
        Command::Sub {
            subject,
            group,
            headers,
            count,
        } => {
            warn_if_in_process(bus);
            let mut subscription = match &group {
                Some(group) => bus.queue_subscribe(&subject, group).await?,
                None => bus.subscribe(&subject).await?,
            };
            say!("subscribed to {subject}");
            let mut seen = 0;
            while count.is_none_or(|limit| seen < limit) {
                let Some(mut incoming) = subscription.next().await else {
                    break;
                };
                println!(
                    "{} {}",
                    incoming.subject(),
                    String::from_utf8_lossy(incoming.payload())
                );
                if headers {
                    for (name, value) in incoming.headers().iter() {
                        println!("  {name}: {value}");
                    }
                }
                incoming.ack().await?;
                seen += 1;
            }
        }
        Command::Req {
            subject,
            payload,
            headers,
            timeout,
        } => {
            let reply = bus
                .request_with_timeout(&subject, message(payload, headers), timeout)
                .await
                .map_err(|err| match (bus.backend(), err.kind()) {
                    ("memory", switchboard::ErrorKind::NoResponders) => format!(
                        "{err}: memory:// only reaches subscribers in this same process; \
                         to reach another process use nats://, kafka://, http:// or grpc://"
                    )
                    .into(),
                    _ => Box::<dyn std::error::Error>::from(err),
                })?;
            println!("{}", String::from_utf8_lossy(&reply.payload));
        }
        Command::Reply {
            subject,
            fixed,
            group,
            count,
            quiet,
        } => {
            let mut subscription = if bus.capabilities().queue_groups.is_supported() {
                bus.queue_subscribe(&subject, &group).await?
            } else {
                bus.subscribe(&subject).await?
            };
            warn_if_in_process(bus);
            match bus.local_address() {
                Some(address) => say!("answering {subject} at {}://{address}", bus.backend()),
                None => say!("answering {subject}"),
            }
            let mut answered = 0;
            while count.is_none_or(|limit| answered < limit) {
                let Some(mut incoming) = subscription.next().await else {
                    break;
                };
                if !incoming.expects_reply() {
                    incoming.ack().await?;
                    continue;
                }
                let reply = match &fixed {
                    Some(text) => Message::new(text.clone()),
                    None => Message::new(incoming.message().payload.clone()),
                };
                // A reply that cannot be delivered (a forged or vanished reply
                // address) is reported; the responder goes on answering others.
                answered += 1;
                // One line per request, as `nats reply` does: what came in and what went out.
                if !quiet {
                    say!(
                        "[#{answered}] {} ({} B in, {} B out)",
                        incoming.subject(),
                        incoming.payload().len(),
                        reply.payload.len()
                    );
                }
                if let Err(err) = incoming.reply(reply).await {
                    say!("reply on `{}` not delivered: {err}", incoming.subject());
                }
                if let Err(err) = incoming.ack().await {
                    say!("could not acknowledge `{}`: {err}", incoming.subject());
                }
            }
        }
        Command::Bench(args) => bench::run(bus, args).await?,
        Command::Outbox(command) => outbox(command).await?,
        Command::Asyncapi { .. } => unreachable!("handled before connecting"),
        Command::DeadLetters(command) => {
            let bus = bus.clone();
            dead_letters::run(command, async move || Ok(bus)).await?
        }
    }
    Ok(())
}
