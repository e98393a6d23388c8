//! Logging set-up: human-readable or JSON lines, filtered by `PHONEPROOF_LOG` / `RUST_LOG`.
use tracing_subscriber::EnvFilter;

pub fn init(format: &str) {
    let filter = std::env::var("PHONEPROOF_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
