//! A stand-in for limitador-server, for the project's fleet-mode tests only: the crates.io
//! `limitador` library with its async Redis storage, behind limitador-server's HTTP routes
//! (see `routes.rs`) and limits file (see `limits_file.rs`). Operators run the official
//! Limitador image; this exists because limitador-server is in no registry the project's
//! machines reach.
//!
//! ```text
//! limitador-standin <LIMITS_FILE> redis <REDIS_URL> [--http-ip 127.0.0.1] [--http-port 8080]
//! limitador-standin <LIMITS_FILE> --validate
//! ```

mod limits_file;
mod routes;

use actix_web::web::Data;
use actix_web::{App, HttpServer};
use clap::{CommandFactory, Parser, Subcommand};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::storage::AsyncStorage;
use limitador::AsyncRateLimiterBuilder;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

/// limitador-server's command line, for what the stand-in does. The options may come
/// before or after the storage (limitador-server takes them before it only).
#[derive(Debug, Parser)]
#[command(
    name = "limitador-standin",
    about = "Test stand-in for limitador-server: its HTTP API over the limitador library and Redis",
    disable_help_subcommand = true
)]
struct Cli {
    /// The limit file to use
    #[arg(value_name = "LIMITS_FILE")]
    limits_file: PathBuf,

    /// The IP to listen on for HTTP (limitador-server's default is 0.0.0.0; the stand-in
    /// stays on loopback unless told otherwise)
    #[arg(
        short = 'B',
        long = "http-ip",
        default_value = "127.0.0.1",
        global = true
    )]
    http_ip: IpAddr,

    /// The port to listen on for HTTP
    #[arg(short = 'P', long = "http-port", default_value_t = 8080, global = true)]
    http_port: u16,

    /// Validates the LIMITS_FILE and exits
    #[arg(long, global = true)]
    validate: bool,

    #[command(subcommand)]
    storage: Option<Storage>,
}

#[derive(Debug, Subcommand)]
#[command(
    subcommand_value_name = "STORAGE",
    subcommand_help_heading = "STORAGES"
)]
enum Storage {
    /// Uses Redis to store counters
    Redis {
        /// Redis URL to use
        #[arg(value_name = "URL")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.validate {
        return validate(&cli.limits_file);
    }
    let Some(Storage::Redis { url }) = cli.storage else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "a storage is required: `redis <URL>` (the only one the stand-in has)",
            )
            .exit()
    };
    match run(cli.limits_file, url, cli.http_ip, cli.http_port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--validate`: prints the limits as limitador-server does (YAML) and exits 0, or prints
/// why the file is refused and exits 1.
fn validate(path: &std::path::Path) -> ExitCode {
    match limits_file::read(path) {
        Ok(limits) => {
            let shown: Vec<routes::Limit> = limits.iter().map(routes::Limit::from).collect();
            match serde_norway::to_string(&shown) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("Config file is valid, but can't be output: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Invalid limit file: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects to Redis, applies the limits file, then serves HTTP until stopped.
///
/// The limiter (and the Redis connection it keeps) lives on a tokio runtime of its own that
/// lasts as long as the process; the HTTP handlers hand each call to it. Used directly from
/// actix-web's per-worker runtimes, the Redis connection's reconnection (after Redis went
/// away) panicked inside a tokio timer and the call that met it hung.
fn run(limits_path: PathBuf, redis_url: String, ip: IpAddr, port: u16) -> Result<(), String> {
    let storage_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("storage")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the storage runtime: {e}"))?;
    let limiter = storage_runtime.block_on(async {
        let storage = AsyncRedisStorage::new(&redis_url)
            .await
            .map_err(|e| format!("Failed to connect to Redis: {e}"))?;
        let limiter = Arc::new(
            AsyncRateLimiterBuilder::new(AsyncStorage::with_counter_storage(Box::new(storage)))
                .build(),
        );
        limits_file::apply(&limits_path, &limiter)
            .await
            .map_err(|e| format!("Failed to load limit file: Invalid limit file: {e}"))?;
        Ok::<_, String>(limiter)
    })?;

    let status = Arc::new(RwLock::new(routes::Status::default()));
    storage_runtime.spawn(limits_file::watch(
        limits_path,
        Arc::clone(&limiter),
        Arc::clone(&status),
    ));

    let state = Data::new(routes::AppState {
        limiter,
        status,
        storage: storage_runtime.handle().clone(),
    });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
        })
        // Tests stop the stand-in with SIGTERM and expect it gone within a second or two.
        .shutdown_timeout(1)
        .bind((ip, port))
        .map_err(|e| format!("cannot listen on {ip}:{port}: {e}"))?;
        eprintln!("HTTP server starting on {ip}:{port}");
        server.run().await.map_err(|e| format!("HTTP server: {e}"))
    })
}
