//! `grpc.health.v1.Health` for gRPC load balancers and Kubernetes gRPC probes: SERVING exactly
//! when `/readyz` would answer 200 (a read and a write round trip), asked at each check.
use std::time::Duration;

use futures::Stream;
use futures::stream::{self, StreamExt};
use std::pin::Pin;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::app::PhoneService;

/// The services a client may ask about: the server as a whole (`""`) and the phone API.
const KNOWN: [&str; 2] = ["", "zitadel.auth.v1.AuthService"];

/// How often a Watch re-checks; it sends only changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

pub struct ReadinessHealth {
    service: PhoneService,
}

impl ReadinessHealth {
    pub fn new(service: PhoneService) -> Self {
        Self { service }
    }
}

async fn status_now(service: &PhoneService) -> ServingStatus {
    match service.ready().await {
        Ok(()) => ServingStatus::Serving,
        Err(_) => ServingStatus::NotServing,
    }
}

fn known(req: &HealthCheckRequest) -> Result<(), Status> {
    if KNOWN.contains(&req.service.as_str()) {
        Ok(())
    } else {
        Err(Status::not_found("unknown service"))
    }
}

#[tonic::async_trait]
impl Health for ReadinessHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        known(request.get_ref())?;
        let status = status_now(&self.service).await;
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        known(request.get_ref())?;
        let service = self.service.clone();
        let changes = stream::unfold(
            (service, None::<ServingStatus>),
            |(service, last)| async move {
                loop {
                    if last.is_some() {
                        tokio::time::sleep(WATCH_INTERVAL).await;
                    }
                    let now = status_now(&service).await;
                    if Some(now) != last {
                        let item = Ok(HealthCheckResponse { status: now as i32 });
                        return Some((item, (service, Some(now))));
                    }
                }
            },
        );
        Ok(Response::new(changes.boxed()))
    }
}
