//! The tonic service `chaos.v1.ChaosDaemon`: a thin edge. Each request is authenticated,
//! read into chaos-api's model ([`Experiment::from_proto`]), handed to the [`Manager`],
//! audited, and its error answered by its class ([`status_of`]).
//!
//! Handlers never block the async runtime: work that may wait (planning, arming, the store)
//! runs on the blocking pool; stopping and the emergency stop disarm inline (microseconds) and
//! measure from the request's arrival, stamped by [`stamp_arrival`] before the body is decoded.
//!
//! Callers are authenticated and given a role by [`auth`]: on the Unix socket (0600) by the
//! kernel's peer credentials, on TCP by the verified client certificate.
//!
//! [`limits`] bounds what callers may hold open (connections, streams, requests in flight,
//! watchers) and for how long, never in front of a stop; [`watch`] serves `WatchExperiment`
//! from one shared sample of the watched experiments.

pub mod auth;
pub mod convert;
pub mod limits;
pub mod watch;

use std::{fmt::Display, pin::Pin, sync::Arc, time::Duration, time::Instant};

use chaos_api::{
    error::{cut_and_escape, sanitize_reason},
    experiment::Experiment,
    proto::{self, chaos_daemon_server::ChaosDaemon},
    state::State,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use self::auth::{Caller, Role};
use crate::{
    engine::Engine,
    error::{Classify, ErrorClass},
    experiment::{Manager, Stopping},
    report,
    safety::{BUDGET_CHECK, Preflight, Refusal, Safety},
    store::PageKey,
};

/// The daemon's manager.
pub type DaemonManager = Manager<Engine>;

/// When a request arrived, stamped by [`stamp_arrival`].
#[derive(Clone, Copy, Debug)]
pub struct Arrival(pub Instant);

/// The interceptor that stamps each request's arrival before its body is decoded.
pub fn stamp_arrival(mut req: Request<()>) -> Result<Request<()>, Status> {
    req.extensions_mut().insert(Arrival(Instant::now()));
    Ok(req)
}

fn arrival<T>(req: &Request<T>) -> Instant {
    req.extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |a| a.0)
}

/// The most bytes of an error's message the daemon answers with, as written: an error may
/// quote a caller's text (a target path), and a status travels in an HTTP/2 header.
const MAX_STATUS_MESSAGE_BYTES: usize = 4096;

/// An error's message as answered: cut to [`MAX_STATUS_MESSAGE_BYTES`], control characters
/// escaped.
fn message(e: &impl Display) -> String {
    cut_and_escape(&e.to_string(), MAX_STATUS_MESSAGE_BYTES)
}

/// The one mapping from domain errors to gRPC status codes.
pub fn status_of<E: Classify + Display>(e: &E) -> Status {
    let msg = message(e);
    match e.class() {
        ErrorClass::Invalid => Status::invalid_argument(msg),
        ErrorClass::NotFound => Status::not_found(msg),
        ErrorClass::Refused => Status::failed_precondition(msg),
        ErrorClass::Exhausted => Status::resource_exhausted(msg),
        ErrorClass::Internal => Status::internal(msg),
    }
}

/// How a start refused by pre-flight is answered: a failed check of the plan with its own
/// error's status, the day's budget as ResourceExhausted, any other as FailedPrecondition,
/// each naming the check.
fn refused(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Plan(e) => status_of(&e),
        Refusal::Check(c) => {
            let message = message(&format!(
                "pre-flight check failed: {}: {}",
                c.name, c.detail
            ));
            if c.name == BUDGET_CHECK {
                Status::resource_exhausted(message)
            } else {
                Status::failed_precondition(message)
            }
        }
    }
}

/// Runs blocking `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("request worker failed: {e}")))?
}

pub struct Service {
    manager: Arc<DaemonManager>,
    safety: Arc<Safety>,
    node: String,
    /// The daemon's watchers, shared by every listener.
    watches: Arc<watch::Watches>,
}

impl Service {
    pub fn new(
        manager: Arc<DaemonManager>,
        safety: Arc<Safety>,
        node: String,
        watches: Arc<watch::Watches>,
    ) -> Self {
        Self {
            manager,
            safety,
            node,
            watches,
        }
    }

    /// Counts a finished request by method and status code.
    fn count<T>(&self, method: &str, r: &Result<T, Status>) {
        let code = match r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.manager
            .metrics
            .grpc_requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
    }

    /// The caller of `req` if it has at least `role`; a refused caller is audited with the
    /// method and why, nothing of the request, so a refused call costs a bounded entry however
    /// large its request.
    fn authorize<T>(&self, req: &Request<T>, method: &str, role: Role) -> Result<Caller, Status> {
        let caller = auth::caller(req).and_then(|c| c.require(role, method).map(|()| c));
        if let Err(s) = &caller {
            self.audit("refused caller", method, "", &Err::<(), _>(s.clone()));
        }
        caller
    }

    fn audit<T>(&self, caller: &str, method: &str, detail: &str, result: &Result<T, Status>) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        // The detail and an error may hold a caller's text (a name before it was validated):
        // the store keeps it cut to a bound, shown and not obeyed.
        self.manager.audit(caller, method, detail, &outcome);
    }
}

/// Reads a request's spec into the model: the same defaults and checks as a file.
fn experiment(spec: Option<&proto::ExperimentSpec>) -> Result<Experiment, Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("spec: missing"))?;
    Experiment::from_proto(spec).map_err(|e| Status::invalid_argument(message(&e)))
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<proto::ExperimentUpdate, Status>> + Send>>;

impl Service {
    async fn do_capabilities(
        &self,
        req: Request<proto::CapabilitiesRequest>,
    ) -> Result<Response<proto::CapabilitiesResponse>, Status> {
        auth::caller(&req)?;
        let caps = self.manager.capabilities();
        Ok(Response::new(proto::CapabilitiesResponse {
            node: self.node.clone(),
            kernel: caps.kernel.clone(),
            capabilities: caps
                .faults
                .iter()
                .map(|c| proto::Capability {
                    experiment_type: c.kind.as_str().into(),
                    supported: c.supported,
                    reason: c.reason.clone(),
                })
                .collect(),
        }))
    }

    /// A dry run (StartExperiment with `dry_run`) or a start: plans, runs the pre-flight
    /// checks, measures the baseline, arms exactly the plan and starts watching its guards. A
    /// dry run runs every check and, when one failed, answers what the start would have
    /// (`refused`) with every check in its metadata; a start refuses at the first that fails.
    async fn plan_or_start(
        &self,
        spec: Option<proto::ExperimentSpec>,
        dry_run: bool,
    ) -> Result<proto::StartExperimentResponse, Status> {
        let experiment = experiment(spec.as_ref())?;
        let manager = self.manager.clone();
        let model = experiment.clone();
        let pre = blocking(move || Ok(Preflight::plan(&manager, &model))).await?;
        let mut set = self.safety.guards_for(&experiment);
        let pre = self
            .safety
            .preflight(
                &self.manager,
                pre,
                &mut set,
                crate::experiment::now_ms(),
                dry_run,
            )
            .await;
        let plan = pre.planned.as_ref().map(|planned| {
            let mut plan = convert::plan_to_proto(&planned.plan, planned.admission.budget);
            if let Some(ramp) = &planned.admission.experiment.ramp
                && let Some(steps) = ramp.values()
            {
                plan.changes.push(format!(
                    "ramp: {steps:?}, each step after {} while every guard is green",
                    humantime::format_duration(ramp.hold)
                ));
            }
            plan
        });
        let response = proto::StartExperimentResponse {
            id: String::new(),
            plan,
            preflight: convert::checks_to_proto(&pre.checks),
        };
        if let Some(refusal) = pre.refusal {
            let status = refused(refusal);
            return Err(if dry_run {
                convert::with_preflight(&status, &response)
            } else {
                status
            });
        }
        let Some(planned) = pre.planned.filter(|_| !dry_run) else {
            return Ok(response);
        };
        let experiment = planned.admission.experiment.clone();
        let interval = self.safety.interval(&experiment);
        // When the baseline ended (now, when there is none).
        let mut measured = Instant::now();
        if !set.is_empty() {
            let window = self.safety.baseline_window(&experiment);
            self.safety
                .baseline(&mut set, &experiment, window, interval)
                .await;
            measured = Instant::now();
            if let Some(v) = set.evaluate(measured).violation {
                return Err(Status::failed_precondition(format!(
                    "baseline: {} (nothing was armed)",
                    v.reason
                )));
            }
        }
        let ramp = experiment
            .ramp
            .as_ref()
            .and_then(|r| r.values().map(|v| (v.to_vec(), r.hold)));
        // From the arm to the guards' watch nothing may cut it short (the call's timeout, a
        // client gone): an armed experiment always gets its guards. A task of its own does it.
        let (manager, safety) = (self.manager.clone(), self.safety.clone());
        let arming = tokio::spawn(async move {
            let m = manager.clone();
            let id = blocking(move || m.start(planned).map_err(|e| status_of(&e))).await?;
            if let Some((steps, _)) = &ramp {
                manager.first_step(
                    &id,
                    crate::safety::step_text(experiment.kind(), steps[0], 1, steps.len()),
                );
            }
            if !set.is_empty() || ramp.is_some() {
                if let Some(t) = &set.triggers {
                    let mut values = t.baseline.slos.clone();
                    values.extend(
                        t.baseline
                            .health
                            .map(|h| ("health success rate".to_owned(), h)),
                    );
                    manager.record_baseline(&id, &values, measured.elapsed());
                }
                safety.watch(
                    manager.clone(),
                    id.clone(),
                    set,
                    interval,
                    experiment.kind(),
                    ramp,
                );
            }
            Ok::<_, Status>(id)
        });
        let id = arming
            .await
            .map_err(|e| Status::internal(format!("starting failed: {e}")))??;
        Ok(proto::StartExperimentResponse { id, ..response })
    }

    async fn do_validate(
        &self,
        req: Request<proto::ValidateRequest>,
    ) -> Result<Response<proto::ValidateResponse>, Status> {
        let caller = self.authorize(&req, "Validate", Role::Operator)?;
        let spec = req.into_inner().spec;
        let detail = spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        // The plan only: the model, the config's limits, the target, the kernel.
        let manager = self.manager.clone();
        let r = blocking(move || {
            let experiment = experiment(spec.as_ref())?;
            let planned = manager.plan(&experiment).map_err(|e| status_of(&e))?;
            Ok(convert::plan_to_proto(
                &planned.plan,
                planned.admission.budget,
            ))
        })
        .await;
        self.audit(&caller.name, "Validate", &detail, &r);
        Ok(Response::new(proto::ValidateResponse { plan: Some(r?) }))
    }

    async fn do_start_experiment(
        &self,
        req: Request<proto::StartExperimentRequest>,
    ) -> Result<Response<proto::StartExperimentResponse>, Status> {
        let caller = self.authorize(&req, "StartExperiment", Role::Operator)?;
        let r = req.into_inner();
        let detail = format!(
            "{} dry_run={}",
            r.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default(),
            r.dry_run
        );
        let result = self.plan_or_start(r.spec, r.dry_run).await;
        self.audit(&caller.name, "StartExperiment", &detail, &result);
        result.map(Response::new)
    }

    async fn do_stop_experiment(
        &self,
        req: Request<proto::StopExperimentRequest>,
    ) -> Result<Response<proto::StopExperimentResponse>, Status> {
        let arrived = arrival(&req);
        let caller = self.authorize(&req, "StopExperiment", Role::Operator)?;
        let id = req.into_inner().id;
        let reason = format!("stopped by {}", caller.name);
        // Disarmed here, on the request's own task: nothing (no thread hand-off, no store)
        // waits in front of it. Releasing and recording go to the blocking pool.
        let disarmed = self
            .manager
            .disarm_now(&id, State::Stopped, &reason, arrived)
            .map_err(|e| status_of(&e));
        let manager = self.manager.clone();
        let what = id.clone();
        let r = blocking(move || {
            let (row, took) = match disarmed? {
                Stopping::Disarmed(run, took) => (manager.finish(&run), took),
                // Not running here: the store tells why (or it started since: stop it).
                Stopping::Unknown => manager
                    .stop(&what, State::Stopped, &reason, arrived)
                    .map_err(|e| status_of(&e))?,
            };
            let view = crate::experiment::ExperimentView::stored(row);
            Ok(proto::StopExperimentResponse {
                status: Some(convert::status_to_proto(&view)),
                disarm_ns: u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            })
        })
        .await;
        self.audit(&caller.name, "StopExperiment", &id, &r);
        r.map(Response::new)
    }

    async fn do_emergency_stop(
        &self,
        req: Request<proto::EmergencyStopRequest>,
    ) -> Result<Response<proto::EmergencyStopResponse>, Status> {
        let arrived = arrival(&req);
        let caller = self.authorize(&req, "EmergencyStop", Role::Observer)?;
        // Cut past its cap, never refused (a long alert text must still stop the node); kept
        // with control characters escaped, so no record, report or audit row carries a
        // terminal escape.
        let reason = sanitize_reason(&req.into_inner().reason);
        let why = if reason.is_empty() {
            format!("emergency stop by {}", caller.name)
        } else {
            format!("emergency stop by {}: {reason}", caller.name)
        };
        // Inline: a few map writes; releasing and recording continue on the recorder.
        let (n, took) = self.manager.emergency_stop(&why, arrived);
        // Then the latch is recorded (on disk before the answer: a restart stays latched).
        let manager = self.manager.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || manager.record_latch(&why)).await {
            tracing::error!(error = %e, "recording the emergency-stop latch failed");
        }
        let r = Ok(proto::EmergencyStopResponse {
            disarmed: u32::try_from(n).unwrap_or(u32::MAX),
            disarm_ns: u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
        });
        self.audit(&caller.name, "EmergencyStop", &reason, &r);
        r.map(Response::new)
    }

    async fn do_clear_emergency_stop(
        &self,
        req: Request<proto::ClearEmergencyStopRequest>,
    ) -> Result<Response<proto::ClearEmergencyStopResponse>, Status> {
        let caller = self.authorize(&req, "ClearEmergencyStop", Role::Operator)?;
        let manager = self.manager.clone();
        let r = blocking(move || {
            manager
                .clear_emergency_stop()
                .map(|()| proto::ClearEmergencyStopResponse {})
                .map_err(|e| status_of(&e))
        })
        .await;
        self.audit(&caller.name, "ClearEmergencyStop", "", &r);
        r.map(Response::new)
    }

    async fn do_get_status(
        &self,
        req: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::GetStatusResponse>, Status> {
        auth::caller(&req)?;
        let running = self.manager.running();
        let latch = self.manager.latch();
        Ok(Response::new(proto::GetStatusResponse {
            node: self.node.clone(),
            emergency_stop: latch.is_some(),
            experiments: running.iter().map(convert::status_to_proto).collect(),
            emergency_stop_reason: latch.as_ref().map(|l| l.reason.clone()).unwrap_or_default(),
            emergency_stop_unix_ms: latch.map_or(0, |l| l.at_ms),
        }))
    }

    async fn do_watch_experiment(
        &self,
        req: Request<proto::WatchExperimentRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let caller = auth::caller(&req)?;
        let r = req.into_inner();
        let updates = self.watches.watch(&caller, r.id, r.interval_ms).await?;
        Ok(Response::new(updates))
    }

    async fn do_list_experiments(
        &self,
        req: Request<proto::ListExperimentsRequest>,
    ) -> Result<Response<proto::ListExperimentsResponse>, Status> {
        auth::caller(&req)?;
        let r = req.into_inner();
        let since = (r.since_s > 0).then(|| Duration::from_secs(r.since_s));
        let size = match usize::try_from(r.page_size).unwrap_or(usize::MAX) {
            0 => convert::MAX_PAGE_SIZE,
            n => n.min(convert::MAX_PAGE_SIZE),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(PageKey::from_token(token).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "page_token: {:?} is not allowed; expected the next_page_token of the \
                     previous page, or \"\" for the first",
                    cut_and_escape(token, 64)
                ))
            })?),
        };
        let manager = self.manager.clone();
        // One more than the page: whether another follows.
        let list = blocking(move || {
            manager
                .list(since, after.as_ref(), size + 1)
                .map_err(|e| status_of(&e))
        })
        .await?;
        Ok(Response::new(convert::page_to_proto(&list, size)))
    }

    async fn do_renew_lease(
        &self,
        req: Request<proto::RenewLeaseRequest>,
    ) -> Result<Response<proto::RenewLeaseResponse>, Status> {
        let caller = self.authorize(&req, "RenewLease", Role::Operator)?;
        let id = req.into_inner().id;
        let manager = self.manager.clone();
        let what = id.clone();
        let r = blocking(move || manager.renew_lease(&what).map_err(|e| status_of(&e)))
            .await
            .map(|lease| proto::RenewLeaseResponse {
                lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            });
        if r.is_err() {
            // Renewals come every few seconds: only the refused ones are audited.
            self.audit(&caller.name, "RenewLease", &id, &r);
        }
        r.map(Response::new)
    }

    async fn do_get_report(
        &self,
        req: Request<proto::GetReportRequest>,
    ) -> Result<Response<proto::Report>, Status> {
        auth::caller(&req)?;
        let id = req.into_inner().id;
        let manager = self.manager.clone();
        let data = blocking(move || manager.report(&id).map_err(|e| status_of(&e))).await?;
        let spec: Option<proto::ExperimentSpec> =
            prost::Message::decode(data.row.spec.as_slice()).ok();
        let (guards, verdict) = report::guard_inputs(&data);
        let rendered = report::Report::new(&data, &guards, &verdict);
        let markdown = report::markdown(rendered);
        let html = report::html(rendered).map_err(|e| Status::internal(e.to_string()))?;
        let json = report::json(rendered).map_err(|e| Status::internal(e.to_string()))?;
        let view = crate::experiment::ExperimentView::stored(data.row);
        Ok(Response::new(proto::Report {
            status: Some(convert::status_to_proto(&view)),
            spec,
            timeline: data
                .events
                .into_iter()
                .map(|e| proto::Event {
                    at_unix_ms: e.at_ms,
                    kind: e.kind,
                    message: e.message,
                })
                .collect(),
            markdown,
            html,
            json,
        }))
    }
}

/// Each method runs its `do_` body and counts the answer by code.
macro_rules! counted {
    ($($method:ident, $name:literal, $body:ident, $req:ty, $resp:ty;)*) => {
        #[tonic::async_trait]
        impl ChaosDaemon for Service {
            type WatchExperimentStream = UpdateStream;
            $(
                async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    let r = self.$body(req).await;
                    self.count($name, &r);
                    r
                }
            )*
        }
    };
}

counted! {
    capabilities, "Capabilities", do_capabilities, proto::CapabilitiesRequest, proto::CapabilitiesResponse;
    validate, "Validate", do_validate, proto::ValidateRequest, proto::ValidateResponse;
    start_experiment, "StartExperiment", do_start_experiment, proto::StartExperimentRequest, proto::StartExperimentResponse;
    stop_experiment, "StopExperiment", do_stop_experiment, proto::StopExperimentRequest, proto::StopExperimentResponse;
    emergency_stop, "EmergencyStop", do_emergency_stop, proto::EmergencyStopRequest, proto::EmergencyStopResponse;
    clear_emergency_stop, "ClearEmergencyStop", do_clear_emergency_stop, proto::ClearEmergencyStopRequest, proto::ClearEmergencyStopResponse;
    get_status, "GetStatus", do_get_status, proto::GetStatusRequest, proto::GetStatusResponse;
    watch_experiment, "WatchExperiment", do_watch_experiment, proto::WatchExperimentRequest, UpdateStream;
    list_experiments, "ListExperiments", do_list_experiments, proto::ListExperimentsRequest, proto::ListExperimentsResponse;
    get_report, "GetReport", do_get_report, proto::GetReportRequest, proto::Report;
    renew_lease, "RenewLease", do_renew_lease, proto::RenewLeaseRequest, proto::RenewLeaseResponse;
}
