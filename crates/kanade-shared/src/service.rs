//! Windows services: install / uninstall under the Service Control Manager, and the service
//! entry point, a thin shell around the same runtime the console mode runs. The SCM's Stop and
//! Shutdown become the runtime's stop signal; the runtime's exit code becomes the service's,
//! and a non-zero one (a self-update asking to be started again, exit 75) triggers the recovery
//! actions installed with the service (restart after 5 s, three times, counters reset after a
//! day), which start the swapped-in binary. On other systems these are errors that name the
//! service manager to use instead.

use std::ffi::OsString;
use std::path::PathBuf;

/// What to register.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's key name (`kanade-agent`).
    pub name: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub exe: PathBuf,
    /// Given to `exe` when the SCM starts it (`service run --config …`).
    pub args: Vec<OsString>,
}

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("Windows services exist only on Windows; on Linux use the systemd unit in deploy/systemd")]
    NotWindows,
    #[error("{what} service {name}")]
    Scm {
        what: &'static str,
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} service {name}: access denied; run this from an elevated prompt (Administrator)")]
    AccessDenied { what: &'static str, name: &'static str },
    #[error("service {0} is not installed")]
    NotInstalled(&'static str),
    /// The process was not started by the SCM (a console run of `service run`).
    #[error("not started by the Service Control Manager")]
    NotUnderScm,
}

/// The stop signal a running service hands its body: it fires on SCM Stop or Shutdown.
pub type StopSignal = std::sync::mpsc::Receiver<()>;

/// A service's body: runs until the stop signal, returns the exit code (0: stopped cleanly).
pub type ServiceBody = fn(StopSignal) -> u32;

#[cfg(windows)]
pub use windows::{install, run, uninstall};

#[cfg(not(windows))]
pub fn install(_spec: &ServiceSpec) -> Result<(), ServiceError> {
    Err(ServiceError::NotWindows)
}

#[cfg(not(windows))]
pub fn uninstall(_name: &'static str) -> Result<(), ServiceError> {
    Err(ServiceError::NotWindows)
}

/// Run `body` as the service `name` until it returns its exit code.
#[cfg(not(windows))]
pub fn run(_name: &'static str, _body: ServiceBody) -> Result<(), ServiceError> {
    Err(ServiceError::NotWindows)
}

#[cfg(windows)]
mod windows {
    use std::sync::OnceLock;
    use std::time::Duration;

    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
        ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo,
        ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{ServiceBody, ServiceError, ServiceSpec};

    const ERROR_ACCESS_DENIED: i32 = 5;
    const ERROR_SERVICE_DATABASE_LOCKED: i32 = 1055;
    const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
    const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
    const ERROR_INVALID_LEVEL: i32 = 124;

    fn scm(what: &'static str, name: &'static str) -> impl Fn(windows_service::Error) -> ServiceError {
        move |e| match e {
            windows_service::Error::Winapi(source)
                if source.raw_os_error() == Some(ERROR_SERVICE_DOES_NOT_EXIST) =>
            {
                ServiceError::NotInstalled(name)
            }
            windows_service::Error::Winapi(source) if source.raw_os_error() == Some(ERROR_ACCESS_DENIED) => {
                ServiceError::AccessDenied { what, name }
            }
            windows_service::Error::Winapi(source) => ServiceError::Scm { what, name, source },
            other => ServiceError::Scm { what, name, source: std::io::Error::other(other.to_string()) },
        }
    }

    pub fn install(spec: &ServiceSpec) -> Result<(), ServiceError> {
        let manager = ServiceManager::local_computer(
            None::<&str>,
            ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        )
        .map_err(scm("cannot open the SCM for", spec.name))?;
        let info = ServiceInfo {
            name: spec.name.into(),
            display_name: spec.display_name.into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: spec.exe.clone(),
            launch_arguments: spec.args.clone(),
            dependencies: Vec::new(),
            account_name: None,
            account_password: None,
        };
        let service = manager
            .create_service(
                &info,
                ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS,
            )
            .map_err(scm("cannot create", spec.name))?;
        service.set_description(spec.description).map_err(scm("cannot describe", spec.name))?;
        let restart =
            ServiceAction { action_type: ServiceActionType::Restart, delay: Duration::from_secs(5) };
        service
            .update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![restart.clone(), restart.clone(), restart]),
            })
            .map_err(scm("cannot set the recovery actions of", spec.name))?;
        // A clean exit with a non-zero code (the self-update's "start me again") counts as a
        // failure too, so the recovery actions start the new binary.
        match service.set_failure_actions_on_non_crash_failures(true) {
            Ok(()) => {}
            // Wine's SCM does not know this setting; real Windows does.
            Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(ERROR_INVALID_LEVEL) => {
                eprintln!("warning: this SCM cannot apply recovery actions to clean non-zero exits ({e})");
            }
            Err(e) => return Err(scm("cannot set failure handling of", spec.name)(e)),
        }
        // Started through a handle of its own, with these closed: wine's SCM keeps its
        // database locked while the creating handles are open.
        drop(service);
        drop(manager);
        start(spec.name)
    }

    /// Start an installed service. Right after a change the SCM may still say the database is
    /// locked, or (wine) not know the new service yet: retried for a few seconds.
    fn start(name: &'static str) -> Result<(), ServiceError> {
        let mut attempts = 0;
        loop {
            let started = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
                .and_then(|m| m.open_service(name, ServiceAccess::START))
                .and_then(|s| s.start::<&str>(&[]));
            match started {
                Ok(()) => return Ok(()),
                Err(windows_service::Error::Winapi(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(ERROR_SERVICE_DATABASE_LOCKED | ERROR_SERVICE_DOES_NOT_EXIST)
                    ) && attempts < 40 =>
                {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(scm("cannot start", name)(e)),
            }
        }
    }

    pub fn uninstall(name: &'static str) -> Result<(), ServiceError> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .map_err(scm("cannot open the SCM for", name))?;
        let service = manager
            .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE)
            .map_err(scm("cannot open", name))?;
        if service.query_status().map_err(scm("cannot query", name))?.current_state != ServiceState::Stopped {
            let _ = service.stop();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline
                && service.query_status().map(|s| s.current_state != ServiceState::Stopped).unwrap_or(false)
            {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        // Marked for deletion; gone once every handle to it is closed.
        service.delete().map_err(scm("cannot delete", name))
    }

    static BODY: OnceLock<(&'static str, ServiceBody)> = OnceLock::new();

    define_windows_service!(ffi_service_main, service_main);

    pub fn run(name: &'static str, body: ServiceBody) -> Result<(), ServiceError> {
        let _ = BODY.set((name, body));
        match service_dispatcher::start(name, ffi_service_main) {
            Ok(()) => Ok(()),
            Err(windows_service::Error::Winapi(e))
                if e.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
            {
                Err(ServiceError::NotUnderScm)
            }
            Err(e) => Err(scm("cannot run as", name)(e)),
        }
    }

    fn status(state: ServiceState, exit: ServiceExitCode) -> ServiceStatus {
        let accept = match state {
            ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            _ => ServiceControlAccept::empty(),
        };
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: exit,
            checkpoint: 0,
            wait_hint: Duration::from_secs(if state == ServiceState::Running { 0 } else { 30 }),
            process_id: None,
        }
    }

    fn service_main(_arguments: Vec<std::ffi::OsString>) {
        let Some((name, body)) = BODY.get().copied() else { return };
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let handler = service_control_handler::register(name, move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                let _ = stop_tx.send(());
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        });
        let Ok(handle) = handler else { return };
        let _ = handle.set_service_status(status(ServiceState::Running, ServiceExitCode::NO_ERROR));
        let code = body(stop_rx);
        let exit = if code == 0 { ServiceExitCode::NO_ERROR } else { ServiceExitCode::ServiceSpecific(code) };
        let _ = handle.set_service_status(status(ServiceState::Stopped, exit));
    }
}
