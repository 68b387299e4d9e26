//! `switchboard dead-letters`: keep, list, show, replay and purge dead letters.

use std::path::PathBuf;

use clap::Subcommand;

/// What to do with a dead-letter store (feature `dead-letters`).
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Keep the dead letters published on the bus in the store, until Ctrl-C (or `--count`).
    Keep {
        /// The store's SQLite file (created if missing).
        #[arg(long)]
        store: PathBuf,
        /// The dead-letter subjects to take.
        #[arg(long, default_value = "dead-letter.>")]
        pattern: String,
        /// Exit after keeping this many.
        #[arg(long)]
        count: Option<u64>,
    },
    /// One line per dead letter: id, subject, attempts, code, cause, service, first and last time, error.
    List {
        /// The store's SQLite file.
        #[arg(long)]
        store: PathBuf,
    },
    /// Everything kept of one dead letter: fields, headers and payload.
    Show {
        /// The store's SQLite file.
        #[arg(long)]
        store: PathBuf,
        /// The dead letter's id (from `list`).
        id: i64,
    },
    /// Publish dead letters' events to their original subjects again; each
    /// leaves the store only once the backend accepted it.
    Replay {
        /// The store's SQLite file.
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        which: Which,
    },
    /// Remove dead letters without replaying them.
    Purge {
        /// The store's SQLite file.
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        which: Which,
    },
}

/// Which dead letters a `replay` or `purge` takes.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// The dead letters' ids (from `list`).
    #[arg(required_unless_present = "all")]
    ids: Vec<i64>,
    /// Every dead letter in the store.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

#[cfg(feature = "dead-letters")]
pub async fn run(
    command: DeadLettersCommand,
    connect: impl AsyncFnOnce() -> switchboard::Result<switchboard::Bus>,
) -> Result<(), Box<dyn std::error::Error>> {
    use switchboard::dead_letters::DeadLetterStore;

    let when = |ms: i64| {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        humantime::format_rfc3339_seconds(at).to_string()
    };
    match command {
        DeadLettersCommand::Keep {
            store,
            pattern,
            count,
        } => {
            let bus = connect().await?;
            let store = DeadLetterStore::open(&store).await?;
            let keeper = store.keep(&bus, &pattern).await?;
            eprintln!("keeping dead letters from {pattern}");
            loop {
                if count.is_some_and(|count| keeper.report().kept >= count) {
                    break;
                }
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                }
            }
            let report = keeper.stop().await;
            eprintln!(
                "kept {} dead letter(s); {} could not be kept",
                report.kept, report.failed
            );
            store.close().await;
            bus.close().await?;
        }
        DeadLettersCommand::List { store } => {
            let store = DeadLetterStore::open(&store).await?;
            for letter in store.list().await? {
                println!(
                    "{}\t{}\tattempts={}\tcode={}\tcause={}\tservice={}\tfirst={}\tlast={}\ttimes={}\t{}",
                    letter.id,
                    letter.subject,
                    letter.attempts,
                    letter.code.as_deref().unwrap_or("-"),
                    letter.cause.as_deref().unwrap_or("-"),
                    letter.service,
                    when(letter.first_ms),
                    when(letter.last_ms),
                    letter.times,
                    letter.error
                );
            }
        }
        DeadLettersCommand::Show { store, id } => {
            let store = DeadLetterStore::open(&store).await?;
            let letter = store
                .get(id)
                .await?
                .ok_or_else(|| format!("no dead letter {id} in the store"))?;
            println!("id: {}", letter.id);
            println!("subject: {}", letter.subject);
            println!("arrived on: {}", letter.arrived_on);
            println!("service: {}", letter.service);
            println!("error: {}", letter.error);
            println!("code: {}", letter.code.as_deref().unwrap_or("-"));
            println!("cause: {}", letter.cause.as_deref().unwrap_or("-"));
            println!("attempts: {}", letter.attempts);
            println!("times dead-lettered: {}", letter.times);
            println!("first: {}", when(letter.first_ms));
            println!("last: {}", when(letter.last_ms));
            for (name, value) in letter.message.headers.iter() {
                println!("header {name}: {value}");
            }
            println!(
                "payload ({} bytes): {}",
                letter.message.payload.len(),
                String::from_utf8_lossy(&letter.message.payload)
            );
        }
        DeadLettersCommand::Replay {
            store,
            which: Which { ids, all },
        } => {
            let store = DeadLetterStore::open(&store).await?;
            let ids = match all {
                true => store.list().await?.iter().map(|l| l.id).collect(),
                false => ids,
            };
            let bus = connect().await?;
            let mut failed = 0;
            for id in ids {
                match store.replay(&bus, id).await {
                    Ok(()) => println!("{id}: replayed"),
                    Err(err) => {
                        failed += 1;
                        eprintln!("{id}: not replayed, kept: {err}");
                    }
                }
            }
            bus.close().await?;
            if failed > 0 {
                return Err(format!("{failed} dead letter(s) not replayed").into());
            }
        }
        DeadLettersCommand::Purge {
            store,
            which: Which { ids, all },
        } => {
            let store = DeadLetterStore::open(&store).await?;
            if all {
                println!("purged {}", store.purge_all().await?);
                return Ok(());
            }
            for id in ids {
                if !store.purge(id).await? {
                    return Err(format!("no dead letter {id} in the store").into());
                }
                println!("{id}: purged");
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "dead-letters"))]
pub async fn run(
    _: DeadLettersCommand,
    _: impl AsyncFnOnce() -> switchboard::Result<switchboard::Bus>,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("this switchboard was built without the `dead-letters` feature".into())
}
