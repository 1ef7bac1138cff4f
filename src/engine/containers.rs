//! The seam in front of the engine for what must never go wrong: pausing, stopping and thawing
//! containers. [`freeze`](crate::engine::freeze) and the journal's repair take any
//! [`Containers`]; production uses Docker's, the unit tests a fake with paused time.

use std::future::Future;

use bollard::Docker;
use bollard::query_parameters::{StartContainerOptions, StopContainerOptions};

/// How the engine refused an operation, as far as the freeze branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The container no longer exists.
    Gone,
    /// A thaw found it already running: somebody unpaused or restarted it.
    NotFrozen,
    /// Anything else (the engine unreachable, a conflict, ...).
    Other,
}

/// An operation the engine refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    /// What kind of refusal.
    pub refusal: Refusal,
    /// What the engine said.
    pub message: String,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {}

/// A container's state, as far as a thaw needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// Its process runs (a paused container still counts as running).
    pub running: bool,
    /// It is paused.
    pub paused: bool,
}

/// Pause, unpause, stop, start and inspect one container by id.
pub trait Containers: Sync {
    /// `docker pause`.
    fn pause(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// `docker unpause`.
    fn unpause(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// `docker stop`, with the container's own stop timeout.
    fn stop(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// `docker start`.
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// `docker inspect`: running and paused.
    fn inspect(&self, id: &str) -> impl Future<Output = Result<State, EngineError>> + Send;
}

/// Docker's answer as a [`Refusal`]. The engine answers 404 for a removed container, and 304, 409
/// or 500 with "is not paused" / "already started" for one that somebody else thawed or restarted.
fn refusal(error: bollard::errors::Error) -> EngineError {
    let refusal = match &error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => {
            if *status_code == 404 || message.contains("No such container") {
                Refusal::Gone
            } else if *status_code == 304
                || message.contains("is not paused")
                || message.contains("already started")
            {
                Refusal::NotFrozen
            } else {
                Refusal::Other
            }
        }
        _ => Refusal::Other,
    };
    EngineError {
        refusal,
        message: error.to_string(),
    }
}

impl Containers for Docker {
    async fn pause(&self, id: &str) -> Result<(), EngineError> {
        self.pause_container(id).await.map_err(refusal)
    }

    async fn unpause(&self, id: &str) -> Result<(), EngineError> {
        self.unpause_container(id).await.map_err(refusal)
    }

    async fn stop(&self, id: &str) -> Result<(), EngineError> {
        self.stop_container(id, None::<StopContainerOptions>)
            .await
            .map_err(refusal)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(refusal)
    }

    async fn inspect(&self, id: &str) -> Result<State, EngineError> {
        let state = self
            .inspect_container(id, None)
            .await
            .map_err(refusal)?
            .state
            .unwrap_or_default();
        Ok(State {
            running: state.running == Some(true),
            paused: state.paused == Some(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn docker_answers_become_refusals() {
        let cases = [
            (404, "No such container: abc", Refusal::Gone),
            (500, "No such container: abc", Refusal::Gone),
            (304, "", Refusal::NotFrozen),
            (409, "Container abc is not paused", Refusal::NotFrozen),
            (500, "container abc is already started", Refusal::NotFrozen),
            (500, "cannot pause: cgroup", Refusal::Other),
        ];
        for (code, message, expected) in cases {
            assert_eq!(
                refusal(server(code, message)).refusal,
                expected,
                "{code} {message}"
            );
        }
    }
}
