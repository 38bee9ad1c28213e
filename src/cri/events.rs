//! GetContainerEvents: the runtime layer's event subscription as a server
//! stream of CRI events, each with the pod's status and its containers'.
//! The stream ends when the client goes away or the daemon stops.
use std::pin::Pin;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio_stream::Stream;
use tonic::Status;

use super::convert::nanos;
use super::errors::status as to_status;
use super::service::{blocking, Cri};
use crate::runtime as rt;

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

/// How often the reader looks at whether it should stop.
const POLL: Duration = Duration::from_millis(250);

fn kind_value(k: rt::EventKind) -> i32 {
    (match k {
        rt::EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        rt::EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        rt::EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        rt::EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }) as i32
}

/// The event with the pod's status as it is now (none once it is gone).
fn message(runtime: &rt::Runtime, e: &rt::Event) -> cri::ContainerEventResponse {
    let sandbox = runtime.sandbox_status(&e.sandbox_id).ok();
    let filter = rt::ContainerFilter { sandbox_id: Some(e.sandbox_id.clone()), ..Default::default() };
    let containers = if sandbox.is_some() { runtime.list_containers(&filter).unwrap_or_default() } else { Vec::new() };
    cri::ContainerEventResponse {
        container_id: e.container_id.as_ref().map_or_else(|| e.sandbox_id.to_string(), |c| c.to_string()),
        container_event_type: kind_value(e.kind),
        created_at: nanos(e.at),
        pod_sandbox_status: sandbox.as_ref().map(super::sandbox::status_message),
        containers_statuses: containers.iter().map(super::container::status_message).collect(),
    }
}

pub async fn subscribe(cri: &Cri, _req: cri::GetEventsRequest) -> Result<EventStream, Status> {
    let runtime = cri.runtime.clone();
    let sub = {
        let runtime = runtime.clone();
        blocking(move || runtime.subscribe().map_err(to_status)).await?
    };
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let stop = cri.stop.clone();
    let span = tracing::Span::current();
    // A blocking reader per subscriber (the subscription is a blocking
    // queue); it ends with the client or the daemon.
    tokio::task::spawn_blocking(move || {
        let _s = span.enter();
        while !tx.is_closed() && !*stop.borrow() {
            let Some(e) = sub.next_timeout(POLL) else {
                continue;
            };
            if tx.blocking_send(Ok(message(&runtime, &e))).is_err() {
                break;
            }
        }
        tracing::debug!("event stream ended");
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
