//! The security-group part of the EC2 Query API (version 2016-11-15) and STS's
//! GetCallerIdentity, served over a [`store::PolicyStore`], so the `aws` CLI, boto3 and
//! Terraform change what `sgwall run` enforces.
//!
//! A request goes: size and connection bounds (`server`) → Signature V4 against the
//! credentials file (`sigv4`, `credentials`) → Query parameters (`query`) → the action
//! (`actions`), which reads the policy or commits changes through the store's one serialised,
//! validated transaction → an XML response or the EC2 error shape (`xml`, `error`). Nothing is
//! changed by a request that fails anywhere before the store commits.

pub mod actions;
pub mod credentials;
pub mod error;
pub mod query;
pub mod server;
pub mod sigv4;
pub mod store;
pub mod xml;

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::StatusCode;

use self::{
    credentials::Credentials,
    error::ApiError,
    query::Params,
    sigv4::{Caller, SignedRequest},
    store::PolicyStore,
};

/// The one API version served.
pub const EC2_VERSION: &str = "2016-11-15";

/// The API over one store, for one credentials file.
pub struct Api {
    store: Box<dyn PolicyStore>,
    credentials: Credentials,
    requests: AtomicU64,
    /// Distinguishes this process's request ids from another's.
    epoch: u64,
}

/// What goes back on the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Api {
    pub fn new(store: Box<dyn PolicyStore>, credentials: Credentials) -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        Self {
            store,
            credentials,
            requests: AtomicU64::new(0),
            epoch,
        }
    }

    pub fn store(&self) -> &dyn PolicyStore {
        self.store.as_ref()
    }

    /// A UUID-shaped request id, unique within this process.
    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let e = self.epoch;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            e & 0xffff_ffff,
            (e >> 32) & 0xffff,
            (n >> 48) & 0xfff,
            (n >> 36) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }

    /// Answers one request that arrived whole; `now` is seconds since the epoch.
    pub fn handle(&self, request: &SignedRequest<'_>, now: i64) -> Answer {
        let request_id = self.request_id();
        let caller = match sigv4::verify(request, &self.credentials, now) {
            Ok(caller) => caller,
            Err(error) => {
                let sts = is_sts_scope(request);
                return failure(&error, &request_id, sts);
            }
        };
        let sts = caller.service == "sts";
        match self.dispatch(request, &caller, &request_id) {
            Ok(body) => Answer {
                status: StatusCode::OK,
                body,
            },
            Err(error) => {
                if error.status.is_server_error() {
                    tracing::warn!(code = error.code, message = %error.message, "API request failed");
                }
                failure(&error, &request_id, sts)
            }
        }
    }

    fn dispatch(
        &self,
        request: &SignedRequest<'_>,
        caller: &Caller,
        request_id: &str,
    ) -> Result<Vec<u8>, ApiError> {
        if request.method != "POST" && request.method != "GET" {
            return Err(ApiError::invalid_parameter(format!(
                "The method {} is not supported; the Query protocol uses POST.",
                request.method
            )));
        }
        let params = Params::parse(request.query, request.body)?;
        let action = params.action()?;
        let context = actions::Context {
            store: self.store.as_ref(),
            caller,
            request_id,
        };
        if caller.service == "sts" {
            return actions::sts(&context, &action, &params);
        }
        if let Some(version) = params.version()
            && version != EC2_VERSION
        {
            return Err(ApiError::invalid_parameter_value(
                "Version",
                &version,
                format!("This endpoint serves EC2 API version {EC2_VERSION}."),
            ));
        }
        actions::ec2(&context, &action, &params)
    }
}

/// Whether an unverifiable request was meant for STS (so its error has STS's shape).
fn is_sts_scope(request: &SignedRequest<'_>) -> bool {
    request.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("authorization") && value.contains("/sts/aws4_request")
    })
}

fn failure(error: &ApiError, request_id: &str, sts: bool) -> Answer {
    Answer {
        status: error.status,
        body: if sts {
            xml::sts_error(error, request_id)
        } else {
            xml::ec2_error(error, request_id)
        },
    }
}

#[cfg(test)]
mod tests;
