//! `grpc-load URL TOKENS_FILE CONNECTIONS SECONDS`: SetMyPhone as fast as the server answers,
//! each connection driving its own users and alternating each user between two numbers (so
//! every call is a change), as .ci/bench/phone.lua does over REST. Prints one line like wrk's.
use std::time::{Duration, Instant};

use phoneproof::grpc::pb::zitadel::auth::v1::SetMyPhoneRequest;
use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, tokens, connections, seconds] = args.as_slice() else {
        eprintln!("usage: grpc-load URL TOKENS_FILE CONNECTIONS SECONDS");
        std::process::exit(2);
    };
    let tokens: Vec<String> = std::fs::read_to_string(tokens)
        .expect("tokens file")
        .lines()
        .map(|t| format!("Bearer {t}"))
        .collect();
    let connections: usize = connections.parse().expect("connections");
    let duration = Duration::from_secs(seconds.parse().expect("seconds"));
    let span = tokens.len() / connections;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        // One HTTP/2 connection per task, like wrk's connections.
        let channel = Channel::from_shared(url.clone())
            .expect("URL")
            .connect()
            .await
            .expect("connect");
        let users: Vec<(usize, String)> = (c * span..(c + 1) * span)
            .map(|u| (u, tokens[u].clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut client = AuthServiceClient::new(channel);
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            let mut n = 0usize;
            while start.elapsed() < duration {
                let (user, token) = &users[n % users.len()];
                // Numbers 004/005, never the REST runs' 000 to 003: every call is a change.
                let flip = 4 + (n / users.len()) % 2;
                n += 1;
                let phone = format!(
                    "+41 79 {flip:03} {:02} {:02}",
                    (user / 100) % 100,
                    user % 100
                );
                let mut req = tonic::Request::new(SetMyPhoneRequest { phone });
                req.metadata_mut()
                    .insert("authorization", token.parse().expect("ASCII token"));
                let sent = Instant::now();
                if client.set_my_phone(req).await.is_err() {
                    errors += 1;
                }
                latencies.push(sent.elapsed());
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "requests/s {:.0}  p50 {:.2} ms  p99 {:.2} ms  errors {errors}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}
