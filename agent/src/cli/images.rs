//! `outpost images`: the image store, used directly (safe while an agent runs:
//! the store locks its index and holds GC off during pulls).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use outpost_runtime::image::pull::{Progress, PullOptions};
use outpost_runtime::image::store::InUse;
use outpost_runtime::image::ImageRef;

use super::{human_bytes, table, NodeDirs};

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        dirs: NodeDirs,
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from its registry (or a configured mirror).
    Pull {
        #[command(flatten)]
        dirs: NodeDirs,
        /// Image reference, e.g. busybox, ghcr.io/org/app:v1, reg:5000/app@sha256:…
        image: String,
        /// Give up after this long; the next pull resumes what was downloaded.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Import OCI-archive or docker-archive tarballs.
    Import {
        #[command(flatten)]
        dirs: NodeDirs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Never garbage-collect these images (as the air-gap dir's are).
        #[arg(long)]
        pin: bool,
    },
    /// Remove images (and layers no other image or container uses).
    #[command(alias = "rmi")]
    Rm {
        #[command(flatten)]
        dirs: NodeDirs,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

pub async fn run(cmd: ImagesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCommand::Ls { dirs, quiet } => {
            let images = dirs.store()?.list()?;
            if quiet {
                for r in images {
                    println!("{}", r.name);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|r| {
                    let (repo, tag) = split_name(&r.name);
                    vec![
                        repo,
                        tag,
                        r.config.short().to_owned(),
                        human_bytes(r.size()),
                        if r.pinned { "yes" } else { "no" }.into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["IMAGE", "TAG", "IMAGE ID", "SIZE", "PINNED"],
                    &rows,
                    false
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::Pull {
            dirs,
            image,
            timeout,
        } => {
            let name: ImageRef = image.parse()?;
            let puller = dirs.puller()?;
            let (progress, finish) = reporter(&name);
            let record = puller
                .pull(
                    &name,
                    &PullOptions {
                        timeout,
                        progress: Some(progress),
                    },
                )
                .await;
            finish();
            let record = record?;
            println!("{} {}", record.name, record.manifest);
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::Import { dirs, files, pin } => {
            let store = dirs.store()?;
            for file in files {
                let store = store.clone();
                let path = file.clone();
                let records = tokio::task::spawn_blocking(move || {
                    outpost_runtime::image::import::import(&store, &path, pin)
                })
                .await
                .context("import task")??;
                for r in records {
                    println!("imported {} {}", r.name, r.manifest);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::Rm { dirs, images } => {
            let store = dirs.store()?;
            let in_use = InUse::from_records(dirs.runtime()?.records());
            for image in images {
                let record = store.find(&image)?.with_context(|| {
                    format!("no image {image:?}; `outpost images ls` lists them")
                })?;
                if in_use.images.contains(&record.name.to_string()) {
                    anyhow::bail!("image {} is used by a container; remove the container first (`outpost ctr rm`)", record.name);
                }
                store.remove(&record.name, &in_use)?;
                println!("deleted {}", record.name);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `docker.io/library/busybox:1.36` → (`docker.io/library/busybox`, `1.36`).
fn split_name(name: &ImageRef) -> (String, String) {
    let tag = match (name.tag(), name.digest()) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => format!("@{}", d.short()),
        (None, None) => "<none>".to_owned(),
    };
    (name.repo_name(), tag)
}

/// A progress bar on a terminal, plain lines (at most one a second) otherwise.
fn reporter(name: &ImageRef) -> (Arc<dyn Fn(Progress) + Send + Sync>, impl FnOnce()) {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(format!("pulling {name}"));
        let b = bar.clone();
        let report = Arc::new(move |p: Progress| {
            b.set_length(p.total);
            b.set_position(p.done);
        });
        return (
            report,
            Box::new(move || bar.finish_and_clear()) as Box<dyn FnOnce()>,
        );
    }
    let name = name.to_string();
    let start = Instant::now();
    let last = Arc::new(Mutex::new(None::<Instant>));
    let report = Arc::new(move |p: Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) || p.done == p.total;
        if due {
            *last = Some(Instant::now());
            let rate = p.done as f64 / start.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "pulling {name}: {} / {} ({}/s, {} of {} layers cached)",
                human_bytes(p.done),
                human_bytes(p.total),
                human_bytes(rate as u64),
                p.cached_layers,
                p.layers
            );
        }
    });
    (report, Box::new(|| {}) as Box<dyn FnOnce()>)
}

/// `30s`, `5m`, `1h`, `250ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h");
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check =
            |s: &str, want: Option<Duration>| assert_eq!(parse_duration(s).ok(), want, "{s}");
        check("30s", Some(Duration::from_secs(30)));
        check("5m", Some(Duration::from_secs(300)));
        check("250ms", Some(Duration::from_millis(250)));
        check("2", Some(Duration::from_secs(2)));
        check("5x", None);
    }
}
