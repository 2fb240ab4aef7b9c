//! [`NatsQueue`]: the scale-out queue, on NATS JetStream.
//!
//! Layout, per erpsync installation `<inst>`:
//! - stream `ERPSYNC_<inst>_JOBS`, work-queue retention, subjects `erpsync.<inst>.jobs.>`; a job
//!   is published to `erpsync.<inst>.jobs.<kind>.<partition>`, where the partition is
//!   [`crate::partition_of`] its key, with `Nats-Msg-Id` = its dedupe id (remembered for the
//!   stream's duplicate window);
//! - one durable pull consumer per partition, `jobs-p<partition>`, filtering
//!   `erpsync.<inst>.jobs.*.<partition>` (every kind of that partition), with
//!   `max_ack_pending = 1`: a partition has at most one job out, so two jobs of one key are never
//!   out together and run in publish order, whatever their kinds. A nak with a delay keeps the
//!   job pending on its consumer, so the jobs behind it wait too;
//! - `ack_wait` is the lease; [`Queue::extend`] sends an in-progress ack, which starts it again;
//! - stream `ERPSYNC_<inst>_DEAD`, subjects `erpsync.<inst>.dead.>`: a job that used up its
//!   deliveries is published there (with its last error) before it is acknowledged on the work
//!   queue, so it is never lost between the two. The delivery limit is counted by this client
//!   from the server's delivery count (`max_deliver` on the server stays unlimited, since the
//!   server would drop a message at the limit without telling anyone but an advisory).
//!
//! Acknowledgements are double acks: [`Queue::ack`] returns once the server confirmed it.

use crate::{DeadJob, Delivery, Nacked, NewQueuedJob, Published, Queue, QueueError, Receipt, Result, check_kind};
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a fetch may wait on a partition: the server holds a request to a partition whose
/// one job is out (`max_ack_pending`) instead of answering "no messages", and without a
/// deadline such a request would wait for good.
const FETCH_EXPIRES: Duration = Duration::from_millis(20);
/// How long after [`FETCH_EXPIRES`] a fetch still listens for an answer.
const FETCH_GRACE: Duration = Duration::from_millis(30);

#[derive(Debug, Clone)]
pub struct NatsQueueOptions {
    /// `nats://127.0.0.1:4222`.
    pub url: String,
    /// Names this installation's streams and subjects: letters, digits, `_` and `-`.
    pub installation: String,
    /// How many partitions keys are spread over: at most this many jobs are out at once.
    /// Fixed for the life of an installation (changing it moves keys between partitions).
    pub partitions: u32,
    /// Deliveries before a job is dead.
    pub max_deliveries: u32,
    /// The lease of every delivery (the consumers' `ack_wait`). The `lease` argument of
    /// [`Queue::pull`] and [`Queue::extend`] cannot change it: JetStream has one per consumer.
    pub ack_wait: Duration,
    /// How long a dedupe id is remembered.
    pub duplicate_window: Duration,
}

impl NatsQueueOptions {
    pub fn new(url: &str, installation: &str) -> Self {
        NatsQueueOptions {
            url: url.to_string(),
            installation: installation.to_string(),
            partitions: 16,
            max_deliveries: 5,
            ack_wait: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(2 * 60 * 60),
        }
    }
}

pub struct NatsQueue {
    jetstream: jetstream::Context,
    options: NatsQueueOptions,
    consumers: Vec<consumer::PullConsumer>,
    dead_stream_name: String,
    /// Where the next pull starts, so that pulls spread over the partitions.
    next_partition: AtomicUsize,
}

/// The body of a job message.
#[derive(Serialize, Deserialize)]
struct JobBody {
    key: String,
    payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_before: Option<DateTime<Utc>>,
}

/// The body of a dead-letter message.
#[derive(Serialize, Deserialize)]
struct DeadBody {
    id: String,
    kind: String,
    key: String,
    payload: serde_json::Value,
    attempts: u32,
    error: String,
    died_at: DateTime<Utc>,
}

impl NatsQueue {
    /// Connects, and creates the streams and consumers when they do not exist yet.
    pub async fn connect(options: NatsQueueOptions) -> Result<Self> {
        check_installation(&options.installation)?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("erpsync-{}", options.installation))
            .connection_timeout(Duration::from_secs(5))
            .connect(options.url.as_str())
            .await
            .map_err(QueueError::nats(format!("connecting to NATS at {}", options.url)))?;
        let jetstream = jetstream::new(client);
        let installation = &options.installation;

        let jobs_stream = jetstream
            .get_or_create_stream(stream::Config {
                name: jobs_stream_name(installation),
                subjects: vec![format!("erpsync.{installation}.jobs.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: options.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(QueueError::nats(format!(
                "creating the job stream of {installation:?} (is JetStream enabled?)"
            )))?;
        let dead_stream_name = dead_stream_name(installation);
        jetstream
            .get_or_create_stream(stream::Config {
                name: dead_stream_name.clone(),
                subjects: vec![format!("erpsync.{installation}.dead.>")],
                storage: stream::StorageType::File,
                duplicate_window: options.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(QueueError::nats(format!("creating the dead-letter stream of {installation:?}")))?;

        let mut consumers = Vec::with_capacity(options.partitions as usize);
        for partition in 0..options.partitions.max(1) {
            let name = format!("jobs-p{partition}");
            let consumer = jobs_stream
                .get_or_create_consumer(
                    &name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: format!("erpsync.{installation}.jobs.*.{partition}"),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: options.ack_wait,
                        max_ack_pending: 1,
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(QueueError::nats(format!("creating consumer {name} of {installation:?}")))?;
            consumers.push(consumer);
        }
        Ok(NatsQueue { jetstream, options, consumers, dead_stream_name, next_partition: AtomicUsize::new(0) })
    }

    /// Deletes this installation's streams and everything in them (tests, uninstall).
    pub async fn delete_streams(&self) -> Result<()> {
        for name in [jobs_stream_name(&self.options.installation), self.dead_stream_name.clone()] {
            self.jetstream.delete_stream(&name).await.map_err(QueueError::nats(format!("deleting stream {name}")))?;
        }
        Ok(())
    }

    /// Turns a fetched message into a delivery, or settles it here: a kind this worker does not
    /// take goes back at once, a job not due yet waits on its partition, and one past its
    /// delivery limit (its lease expired on the last delivery) is dead.
    async fn accept(&self, message: jetstream::Message, kinds: &[&str]) -> Result<Option<Delivery>> {
        let (sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, u32::try_from(info.delivered).unwrap_or(u32::MAX)),
            Err(error) => {
                return Err(QueueError::Nats { doing: "reading a delivery's metadata".into(), source: error });
            }
        };
        let kind = message.subject.split('.').nth(3).unwrap_or_default().to_string();
        let message = Arc::new(message);
        let body: JobBody = match serde_json::from_slice(&message.payload) {
            Ok(body) => body,
            Err(error) => {
                let body =
                    JobBody { key: format!("message:{sequence}"), payload: serde_json::Value::Null, not_before: None };
                let reason = format!("unreadable job message: {error}");
                self.bury(&message, sequence, &kind, &body, delivered, &reason).await?;
                return Ok(None);
            }
        };
        if !kinds.contains(&kind.as_str()) {
            // Another worker takes it; this costs the job one delivery.
            message
                .ack_with(AckKind::Nak(None))
                .await
                .map_err(QueueError::nats("handing back a job of another kind"))?;
            return Ok(None);
        }
        if delivered > self.options.max_deliveries {
            let reason = format!("delivered {delivered} times without acknowledgement: its lease expired");
            self.bury(&message, sequence, &kind, &body, delivered - 1, &reason).await?;
            return Ok(None);
        }
        if let Some(not_before) = body.not_before {
            let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                message
                    .ack_with(AckKind::Nak(Some(wait)))
                    .await
                    .map_err(QueueError::nats("putting back a job that is not due"))?;
                return Ok(None);
            }
        }
        Ok(Some(Delivery {
            id: sequence.to_string(),
            kind,
            key: body.key,
            payload: body.payload,
            attempt: delivered,
            receipt: Receipt::Nats(message),
        }))
    }

    /// Publishes a dead copy (deduplicated by the job's sequence, so a retry after a crash does
    /// not add a second), then removes the job from the work queue.
    async fn bury(
        &self,
        message: &jetstream::Message,
        sequence: u64,
        kind: &str,
        body: &JobBody,
        attempts: u32,
        reason: &str,
    ) -> Result<()> {
        let dead = DeadBody {
            id: sequence.to_string(),
            kind: kind.to_string(),
            key: body.key.clone(),
            payload: body.payload.clone(),
            attempts,
            error: reason.to_string(),
            died_at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&dead).expect("a dead-letter body is plain JSON");
        let subject =
            format!("erpsync.{}.dead.{}", self.options.installation, if kind.is_empty() { "unknown" } else { kind });
        let publish =
            jetstream::message::PublishMessage::build().payload(bytes.into()).message_id(format!("dead-{sequence}"));
        self.jetstream
            .send_publish(subject, publish)
            .await
            .map_err(QueueError::nats("publishing a dead job"))?
            .await
            .map_err(QueueError::nats("storing a dead job"))?;
        message.double_ack().await.map_err(QueueError::nats("removing a dead job from the work queue"))?;
        tracing::warn!(job = %sequence, kind, attempts, error = reason, "Job is dead.");
        Ok(())
    }
}

fn jobs_stream_name(installation: &str) -> String {
    format!("ERPSYNC_{installation}_JOBS")
}

fn dead_stream_name(installation: &str) -> String {
    format!("ERPSYNC_{installation}_DEAD")
}

fn check_installation(installation: &str) -> Result<()> {
    let plain = !installation.is_empty()
        && installation.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if plain {
        return Ok(());
    }
    Err(QueueError::InvalidName {
        what: "installation name",
        name: installation.to_string(),
        rule: "letters, digits, '_' and '-' only",
    })
}

fn message_of(delivery: &Delivery) -> Result<&jetstream::Message> {
    match &delivery.receipt {
        Receipt::Nats(message) => Ok(message),
        Receipt::Store { .. } => Err(QueueError::ForeignDelivery { id: delivery.id.clone() }),
    }
}

#[async_trait]
impl Queue for NatsQueue {
    async fn publish(&self, job: &NewQueuedJob) -> Result<Published> {
        check_kind(&job.kind)?;
        let partition = crate::partition_of(&job.key, self.options.partitions);
        let subject = format!("erpsync.{}.jobs.{}.{partition}", self.options.installation, job.kind);
        let body = JobBody { key: job.key.clone(), payload: job.payload.clone(), not_before: job.not_before };
        let bytes = serde_json::to_vec(&body).expect("a job body is plain JSON");
        let mut publish = jetstream::message::PublishMessage::build().payload(bytes.into());
        if let Some(dedupe_id) = &job.dedupe_id {
            publish = publish.message_id(dedupe_id);
        }
        let ack = self
            .jetstream
            .send_publish(subject, publish)
            .await
            .map_err(QueueError::nats("publishing a job"))?
            .await
            .map_err(QueueError::nats("storing a published job"))?;
        Ok(match ack.duplicate {
            true => Published::Duplicate,
            false => Published::Published { id: ack.sequence.to_string() },
        })
    }

    async fn pull(&self, _worker: &str, kinds: &[&str], max: usize, _lease: Duration) -> Result<Vec<Delivery>> {
        let mut deliveries = Vec::new();
        if kinds.is_empty() || max == 0 {
            return Ok(deliveries);
        }
        // Ask the partitions at once, from a rotating start so that pullers spread out: a
        // partition whose job is out answers only when its request expires.
        let n_partitions = self.consumers.len();
        let start = self.next_partition.fetch_add(1, Ordering::Relaxed) % n_partitions;
        let asked = (0..n_partitions.min(max)).map(|offset| {
            let consumer = &self.consumers[(start + offset) % n_partitions];
            async move {
                let mut batch = consumer
                    .fetch()
                    .max_messages(1)
                    .expires(FETCH_EXPIRES)
                    .messages()
                    .await
                    .map_err(QueueError::nats("asking for a job"))?;
                // The server does not always answer an expired request at once (2.9 answers a
                // request held by `max_ack_pending` late), so the client stops listening a little
                // after the request expired: the server gives a message only to a request that
                // has not expired.
                let answer = tokio::time::timeout(FETCH_EXPIRES + FETCH_GRACE, batch.next()).await;
                match answer {
                    Ok(Some(Ok(message))) => Ok(Some(message)),
                    Ok(Some(Err(error))) => {
                        // A status in answer to the request: nothing to take from it now.
                        tracing::debug!(%error, "Partition has nothing to hand out.");
                        Ok(None)
                    }
                    Ok(None) | Err(_) => Ok::<_, QueueError>(None),
                }
            }
        });
        for messages in futures_util::future::join_all(asked).await {
            if let Some(message) = messages?
                && let Some(delivery) = self.accept(message, kinds).await?
            {
                deliveries.push(delivery);
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let message = message_of(delivery)?;
        message.double_ack().await.map_err(QueueError::nats("acknowledging a job"))
    }

    async fn nak(&self, delivery: &Delivery, delay: Duration, reason: &str) -> Result<Nacked> {
        let message = message_of(delivery)?;
        if delivery.attempt >= self.options.max_deliveries {
            let body = JobBody { key: delivery.key.clone(), payload: delivery.payload.clone(), not_before: None };
            let sequence = delivery.id.parse().unwrap_or_default();
            self.bury(message, sequence, &delivery.kind, &body, delivery.attempt, reason).await?;
            return Ok(Nacked::Dead);
        }
        message.ack_with(AckKind::Nak(Some(delay))).await.map_err(QueueError::nats("handing back a failed job"))?;
        Ok(Nacked::Retry)
    }

    async fn extend(&self, delivery: &Delivery, _lease: Duration) -> Result<()> {
        let message = message_of(delivery)?;
        message.ack_with(AckKind::Progress).await.map_err(QueueError::nats("extending a lease"))
    }

    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>> {
        let mut stream = self
            .jetstream
            .get_stream(&self.dead_stream_name)
            .await
            .map_err(QueueError::nats("opening the dead-letter stream"))?;
        let state = stream.info().await.map_err(QueueError::nats("reading the dead-letter stream"))?.state.clone();
        let mut dead = Vec::new();
        if state.messages == 0 {
            return Ok(dead);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if dead.len() >= limit {
                break;
            }
            let message = match stream.get_raw_message(sequence).await {
                Ok(message) => message,
                // A gap: a message removed by a limit or by hand.
                Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => continue,
                Err(error) => return Err(QueueError::nats("reading a dead job")(error)),
            };
            match serde_json::from_slice::<DeadBody>(&message.payload) {
                Ok(body) => dead.push(DeadJob {
                    id: body.id,
                    kind: body.kind,
                    key: body.key,
                    payload: body.payload,
                    attempts: body.attempts,
                    error: body.error,
                    died_at: body.died_at,
                }),
                Err(error) => tracing::warn!(sequence, %error, "Dead-letter message is unreadable; skipped."),
            }
        }
        Ok(dead)
    }
}
