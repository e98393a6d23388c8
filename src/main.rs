//! The `phoneproof` command: wires settings, telemetry and the application together.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use phoneproof::auth::TokenVerifier;
use phoneproof::config::Settings;
use phoneproof::startup::{Application, Core, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "phoneproof",
    version,
    about = "Phone number verification by SMS, ZITADEL-compatible"
)]
struct Cli {
    /// TOML configuration file; PHONEPROOF_* environment variables override it.
    #[arg(long, global = true, env = "PHONEPROOF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service (HTTP API and SMS outbox worker).
    Serve,
    /// Run only the SMS outbox worker.
    Worker,
    /// Print an access token the service accepts (local auth only).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        org: String,
        /// Print this many tokens, for users `<user>0` to `<user><count-1>` (load tests).
        #[arg(long)]
        count: Option<u32>,
        /// The user's language (a language tag such as `de`), put in the language claim.
        #[arg(long)]
        language: Option<String>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// List SMS outbox messages (one JSON object a line; never their text).
    Outbox {
        /// Only messages in this state: pending, delivered, dropped or parked.
        #[arg(long)]
        status: Option<String>,
    },
}

fn load_settings(config: Option<&PathBuf>) -> Result<Settings, String> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    Settings::load(config.map(|p| p.as_path()), &env).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Openapi = cli.command {
        print!("{}", phoneproof::openapi::openapi_json());
        return ExitCode::SUCCESS;
    }
    let settings = match load_settings(cli.config.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("phoneproof: {e}");
            return ExitCode::from(2);
        }
    };
    phoneproof::telemetry::init(settings.log_format);
    let result = match cli.command {
        Cmd::Serve => serve(settings).await,
        Cmd::Worker => worker(settings).await,
        Cmd::Token {
            user,
            org,
            count,
            language,
        } => token(settings, &user, &org, count, language.as_deref()).await,
        Cmd::Outbox { status } => outbox(settings, status.as_deref()).await,
        Cmd::Openapi => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phoneproof: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(settings, None)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn worker(settings: Settings) -> Result<(), String> {
    let core = Core::build(settings, None)
        .await
        .map_err(|e| e.to_string())?;
    core.announce();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(core.worker().run(rx));
    shutdown_signal().await;
    let _ = tx.send(true);
    task.await.map_err(|e| e.to_string())
}

async fn outbox(settings: Settings, status: Option<&str>) -> Result<(), String> {
    let core = Core::build(settings, None)
        .await
        .map_err(|e| e.to_string())?;
    let rows = core
        .service
        .store()
        .outbox()
        .await
        .map_err(|e| e.to_string())?;
    for row in rows {
        if status.is_some_and(|s| s != row.status) {
            continue;
        }
        let line = serde_json::json!({
            "id": row.id, "user": row.user_id, "to": row.recipient_masked, "status": row.status,
            "attempts": row.attempts, "next_attempt": phoneproof::clock::rfc3339(row.next_attempt_at),
            "last_error": row.last_error,
        });
        println!("{line}");
    }
    Ok(())
}

async fn token(
    settings: Settings,
    user: &str,
    org: &str,
    count: Option<u32>,
    language: Option<&str>,
) -> Result<(), String> {
    if !matches!(
        settings.auth.mode,
        phoneproof::config::AuthMode::Local { .. }
    ) {
        return Err("`token` only works with local auth (auth.mode = local); with jwks, get tokens from your issuer".into());
    }
    if phoneproof::domain::UserId::parse(user).is_none()
        || phoneproof::domain::ResourceOwner::parse(org).is_none()
    {
        return Err("--user and --org must be non-empty ids without control characters".into());
    }
    let core = Core::build(settings, None)
        .await
        .map_err(|e| e.to_string())?;
    let verifier = TokenVerifier::new(&core.settings.auth, &core.secrets.signing_seed)
        .map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let users: Vec<String> = match count {
        None => vec![user.to_owned()],
        Some(n) => (0..n).map(|i| format!("{user}{i}")).collect(),
    };
    let mut out = String::new();
    for u in users {
        let token = verifier
            .issue_speaking(&u, org, language, now)
            .map_err(|e| e.to_string())?;
        out.push_str(&token);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
