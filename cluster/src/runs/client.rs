//! The submitter's side of cluster deploy mode: `/ubm/runs` on the scheduler's port, through
//! the same HTTP client (and TLS material) as the scheduler's REST API.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::{RunRequest, RunView};
use crate::ClusterError;
use crate::engine::scheduler_api::SchedulerApi;

/// The runs of the scheduler behind `api`.
#[derive(Debug, Clone)]
pub struct RunsApi {
    api: SchedulerApi,
}

impl RunsApi {
    pub fn new(api: SchedulerApi) -> Self {
        Self { api }
    }

    pub fn scheduler(&self) -> &crate::SchedulerAddress {
        self.api.scheduler()
    }

    /// Hands a run to the cluster; its driver is started before this returns.
    pub async fn submit(&self, request: &RunRequest) -> Result<RunView, ClusterError> {
        let body = serde_json::to_vec(request).map_err(|e| self.api.error(None, format!("encoding the request: {e}")))?;
        let request = self.api.http().post(self.api.url("ubm/runs")?).header("content-type", "application/json").body(body);
        self.answer(request, "submitting the run").await?.ok_or_else(|| self.no_runs())
    }

    /// Every run the scheduler keeps, newest first.
    pub async fn list(&self) -> Result<Vec<RunView>, ClusterError> {
        self.answer(self.api.http().get(self.api.url("ubm/runs")?), "listing the runs").await?.ok_or_else(|| self.no_runs())
    }

    /// One run; `None` when the scheduler has no run of that id.
    pub async fn get(&self, id: &str) -> Result<Option<RunView>, ClusterError> {
        self.answer(self.api.http().get(self.api.url(&format!("ubm/runs/{id}"))?), "reading the run").await
    }

    /// Stops a run; `None` when the scheduler has no run of that id.
    pub async fn cancel(&self, id: &str) -> Result<Option<RunView>, ClusterError> {
        self.answer(self.api.http().post(self.api.url(&format!("ubm/runs/{id}/cancel"))?), "cancelling the run").await
    }

    /// The answer's JSON; `None` on 404; the scheduler's own error message otherwise.
    async fn answer<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder, doing: &str) -> Result<Option<T>, ClusterError> {
        let response = request.send().await.map_err(|e| self.api.unreachable(e))?;
        let status = response.status();
        if response.headers().contains_key(crate::tls::TLS_REQUIRED_HEADER) {
            return Err(ClusterError::TlsRequired { scheduler: self.api.scheduler().to_string() });
        }
        let body = response.bytes().await.map_err(|e| self.api.unreachable(e))?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
            return Err(self.api.error(Some(status.as_u16()), format!("{doing} was refused: {message}")));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| self.api.error(Some(status.as_u16()), format!("{doing}: an answer ubm cannot read ({e})")))
    }

    fn no_runs(&self) -> ClusterError {
        self.api.error(Some(404), "serves no cluster-mode runs (/ubm/runs): it is not a `ubm cluster scheduler` of this version".to_string())
    }
}
