//! The tonic service `chaos.v1.ChaosDaemon`: a thin edge. Each request is authenticated,
//! converted into a call on the [`Manager`] ([`convert`]), audited, and its error mapped to a
//! status code in one place ([`status_of`]).
//!
//! Callers are authenticated and given a role by [`auth`]: on the Unix socket (0600) by the
//! kernel's peer credentials, on TCP by the verified client certificate.

pub mod auth;
pub mod convert;

use std::{pin::Pin, sync::Arc, time::Duration};

use chaos_api::proto::{self, chaos_daemon_server::ChaosDaemon};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use self::auth::{Caller, Role};

use crate::{
    ebpf::KernelError,
    engine::EngineError,
    experiment::{ExperimentError, Manager},
    fault::SpecError,
    host_fault::HostFaultError,
    net::{devices::DeviceError, latency::LatencyError},
    report,
    target::TargetError,
};

/// The one mapping from domain errors to gRPC status codes.
pub fn status_of(e: &ExperimentError) -> Status {
    let msg = e.to_string();
    match e {
        ExperimentError::Engine(EngineError::Spec(_)) => Status::invalid_argument(msg),
        // A target that is not on this node is NotFound (a fan-out asks every node); one that
        // is malformed is invalid; one that exists but may not be touched is a refusal.
        ExperimentError::Engine(EngineError::Target(t)) => match t {
            TargetError::NotACgroup { .. }
            | TargetError::NotFound { .. }
            | TargetError::Pid { .. } => Status::not_found(msg),
            TargetError::BadContainerId { .. } | TargetError::BadPodUid { .. } => {
                Status::invalid_argument(msg)
            }
            _ => Status::failed_precondition(msg),
        },
        ExperimentError::Engine(EngineError::NoFreeSlot) => Status::resource_exhausted(msg),
        ExperimentError::Engine(EngineError::Kernel(KernelError::LsmUnsupported(_))) => {
            Status::failed_precondition(msg)
        }
        ExperimentError::Engine(EngineError::UnknownFault(_)) => Status::not_found(msg),
        ExperimentError::Engine(
            EngineError::Unsupported { .. } | EngineError::Host(HostFaultError::Unusable { .. }),
        )
        | ExperimentError::Disabled(_) => Status::failed_precondition(msg),
        ExperimentError::Latched | ExperimentError::NotRunning { .. } => {
            Status::failed_precondition(msg)
        }
        ExperimentError::NotFound(_) => Status::not_found(msg),
        ExperimentError::BudgetInvalid { .. } | ExperimentError::LatencyTooHigh { .. } => {
            Status::invalid_argument(msg)
        }
        ExperimentError::Engine(EngineError::Latency(l)) => match l {
            LatencyError::Device(DeviceError::NoDevice { .. })
            | LatencyError::NoDefaultRoute { .. } => Status::invalid_argument(msg),
            LatencyError::ManyNetns { .. }
            | LatencyError::Device(DeviceError::Unrestorable { .. }) => {
                Status::failed_precondition(msg)
            }
            _ => Status::internal(msg),
        },
        ExperimentError::BudgetExhausted { .. } | ExperimentError::BudgetTooSmall { .. } => {
            Status::resource_exhausted(msg)
        }
        ExperimentError::Engine(_) | ExperimentError::Store(_) => Status::internal(msg),
    }
}

fn invalid(e: SpecError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub struct Service {
    manager: Arc<Manager>,
    node: String,
}

impl Service {
    pub fn new(manager: Arc<Manager>, node: String) -> Self {
        Self { manager, node }
    }

    /// Who is calling, or Unauthenticated/PermissionDenied.
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        auth::caller(req)
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

    /// Runs `f` for a caller with at least `role` and writes the audit log, refusals included.
    fn audited<T, R>(
        &self,
        req: &Request<T>,
        method: &str,
        role: Role,
        detail: &str,
        f: impl FnOnce(&str) -> Result<R, Status>,
    ) -> Result<R, Status> {
        let caller = match self
            .caller(req)
            .and_then(|c| c.require(role, method).map(|()| c))
        {
            Ok(c) => c.name,
            Err(s) => {
                let outcome = format!("{:?}: {}", s.code(), s.message());
                self.manager
                    .audit("refused caller", method, detail, &outcome);
                return Err(s);
            }
        };
        let result = f(&caller);
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        self.manager.audit(&caller, method, detail, &outcome);
        result
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<proto::ExperimentUpdate, Status>> + Send>>;

impl Service {
    async fn do_capabilities(
        &self,
        req: Request<proto::CapabilitiesRequest>,
    ) -> Result<Response<proto::CapabilitiesResponse>, Status> {
        self.caller(&req)?;
        let caps = self.manager.capabilities();
        Ok(Response::new(proto::CapabilitiesResponse {
            node: self.node.clone(),
            kernel: caps.kernel,
            capabilities: caps
                .faults
                .into_iter()
                .map(|c| proto::Capability {
                    fault: c.fault.into(),
                    supported: c.supported,
                    reason: c.reason,
                })
                .collect(),
        }))
    }

    async fn do_validate(
        &self,
        req: Request<proto::ValidateRequest>,
    ) -> Result<Response<proto::ValidateResponse>, Status> {
        self.caller(&req)?;
        let msg = req.get_ref().spec.clone().unwrap_or_default();
        let (_, spec) = convert::spec_from_proto(&msg).map_err(invalid)?;
        let plan = self
            .manager
            .plan(&spec, msg.budget)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(proto::ValidateResponse {
            plan: Some(convert::plan_to_proto(plan)),
        }))
    }

    async fn do_start_experiment(
        &self,
        req: Request<proto::StartExperimentRequest>,
    ) -> Result<Response<proto::StartExperimentResponse>, Status> {
        let r = req.get_ref();
        let spec_msg = r.spec.clone().unwrap_or_default();
        let detail = format!("{} dry_run={}", spec_msg.name, r.dry_run);
        self.audited(&req, "StartExperiment", Role::Operator, &detail, |_| {
            let (name, spec) = convert::spec_from_proto(&spec_msg).map_err(invalid)?;
            let plan = self
                .manager
                .plan(&spec, spec_msg.budget)
                .map_err(|e| status_of(&e))?;
            let id = if r.dry_run {
                String::new()
            } else {
                let bytes = prost::Message::encode_to_vec(&spec_msg);
                self.manager
                    .start(&name, &spec, spec_msg.budget, bytes)
                    .map_err(|e| status_of(&e))?
            };
            Ok(Response::new(proto::StartExperimentResponse {
                id,
                plan: Some(convert::plan_to_proto(plan)),
            }))
        })
    }

    async fn do_stop_experiment(
        &self,
        req: Request<proto::StopExperimentRequest>,
    ) -> Result<Response<proto::StopExperimentResponse>, Status> {
        let id = req.get_ref().id.clone();
        self.audited(&req, "StopExperiment", Role::Operator, &id, |caller| {
            let row = self
                .manager
                .stop(&id, "stopped", &format!("stopped by {caller}"))
                .map_err(|e| status_of(&e))?;
            let view = crate::experiment::ExperimentView { row };
            Ok(Response::new(proto::StopExperimentResponse {
                status: Some(convert::status_to_proto(&view)),
            }))
        })
    }

    async fn do_emergency_stop(
        &self,
        req: Request<proto::EmergencyStopRequest>,
    ) -> Result<Response<proto::EmergencyStopResponse>, Status> {
        let reason = req.get_ref().reason.clone();
        self.audited(&req, "EmergencyStop", Role::Observer, &reason, |caller| {
            let why = if reason.is_empty() {
                format!("emergency stop by {caller}")
            } else {
                format!("emergency stop by {caller}: {reason}")
            };
            let (n, took) = self
                .manager
                .emergency_stop(&why)
                .map_err(|e| status_of(&e))?;
            Ok(Response::new(proto::EmergencyStopResponse {
                disarmed: n as u32,
                disarm_ns: took.as_nanos() as u64,
            }))
        })
    }

    async fn do_clear_emergency_stop(
        &self,
        req: Request<proto::ClearEmergencyStopRequest>,
    ) -> Result<Response<proto::ClearEmergencyStopResponse>, Status> {
        self.audited(&req, "ClearEmergencyStop", Role::Operator, "", |_| {
            self.manager.clear_emergency_stop();
            Ok(Response::new(proto::ClearEmergencyStopResponse {}))
        })
    }

    async fn do_get_status(
        &self,
        req: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::GetStatusResponse>, Status> {
        self.caller(&req)?;
        let running = self.manager.running().map_err(|e| status_of(&e))?;
        Ok(Response::new(proto::GetStatusResponse {
            node: self.node.clone(),
            emergency_stop: self.manager.latched(),
            experiments: running.iter().map(convert::status_to_proto).collect(),
        }))
    }

    async fn do_watch_experiment(
        &self,
        req: Request<proto::WatchExperimentRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        self.caller(&req)?;
        let r = req.into_inner();
        let first = self.manager.get(&r.id).map_err(|e| status_of(&e))?;
        let interval = Duration::from_millis(if r.interval_ms == 0 {
            1000
        } else {
            u64::from(r.interval_ms.max(50))
        });
        let manager = self.manager.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let started = first.row.started_ms;
            loop {
                let update = manager.get(&r.id).map_err(|e| status_of(&e));
                let done = update.as_ref().map_or(true, |v| v.row.state != "running");
                let msg = update.map(|v| proto::ExperimentUpdate {
                    elapsed_ms: crate::experiment::now_ms().saturating_sub(started),
                    status: Some(convert::status_to_proto(&v)),
                });
                if tx.send(msg).await.is_err() || done {
                    return;
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn do_list_experiments(
        &self,
        req: Request<proto::ListExperimentsRequest>,
    ) -> Result<Response<proto::ListExperimentsResponse>, Status> {
        self.caller(&req)?;
        let since = req.get_ref().since_s;
        let since = (since > 0).then(|| Duration::from_secs(since));
        let list = self.manager.list(since).map_err(|e| status_of(&e))?;
        Ok(Response::new(proto::ListExperimentsResponse {
            experiments: list.iter().map(convert::status_to_proto).collect(),
        }))
    }

    async fn do_get_report(
        &self,
        req: Request<proto::GetReportRequest>,
    ) -> Result<Response<proto::Report>, Status> {
        self.caller(&req)?;
        let data = self
            .manager
            .report(&req.get_ref().id)
            .map_err(|e| status_of(&e))?;
        let spec: Option<proto::ExperimentSpec> =
            prost::Message::decode(data.row.spec.as_slice()).ok();
        let markdown = report::markdown(&data);
        let view = crate::experiment::ExperimentView { row: data.row };
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
        }))
    }
}

#[tonic::async_trait]
impl ChaosDaemon for Service {
    type WatchExperimentStream = UpdateStream;

    async fn capabilities(
        &self,
        req: Request<proto::CapabilitiesRequest>,
    ) -> Result<Response<proto::CapabilitiesResponse>, Status> {
        let r = self.do_capabilities(req).await;
        self.count("Capabilities", &r);
        r
    }

    async fn validate(
        &self,
        req: Request<proto::ValidateRequest>,
    ) -> Result<Response<proto::ValidateResponse>, Status> {
        let r = self.do_validate(req).await;
        self.count("Validate", &r);
        r
    }

    async fn start_experiment(
        &self,
        req: Request<proto::StartExperimentRequest>,
    ) -> Result<Response<proto::StartExperimentResponse>, Status> {
        let r = self.do_start_experiment(req).await;
        self.count("StartExperiment", &r);
        r
    }

    async fn stop_experiment(
        &self,
        req: Request<proto::StopExperimentRequest>,
    ) -> Result<Response<proto::StopExperimentResponse>, Status> {
        let r = self.do_stop_experiment(req).await;
        self.count("StopExperiment", &r);
        r
    }

    async fn emergency_stop(
        &self,
        req: Request<proto::EmergencyStopRequest>,
    ) -> Result<Response<proto::EmergencyStopResponse>, Status> {
        let r = self.do_emergency_stop(req).await;
        self.count("EmergencyStop", &r);
        r
    }

    async fn clear_emergency_stop(
        &self,
        req: Request<proto::ClearEmergencyStopRequest>,
    ) -> Result<Response<proto::ClearEmergencyStopResponse>, Status> {
        let r = self.do_clear_emergency_stop(req).await;
        self.count("ClearEmergencyStop", &r);
        r
    }

    async fn get_status(
        &self,
        req: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::GetStatusResponse>, Status> {
        let r = self.do_get_status(req).await;
        self.count("GetStatus", &r);
        r
    }

    async fn watch_experiment(
        &self,
        req: Request<proto::WatchExperimentRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let r = self.do_watch_experiment(req).await;
        self.count("WatchExperiment", &r);
        r
    }

    async fn list_experiments(
        &self,
        req: Request<proto::ListExperimentsRequest>,
    ) -> Result<Response<proto::ListExperimentsResponse>, Status> {
        let r = self.do_list_experiments(req).await;
        self.count("ListExperiments", &r);
        r
    }

    async fn get_report(
        &self,
        req: Request<proto::GetReportRequest>,
    ) -> Result<Response<proto::Report>, Status> {
        let r = self.do_get_report(req).await;
        self.count("GetReport", &r);
        r
    }
}
