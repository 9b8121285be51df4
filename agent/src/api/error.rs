//! The EC2 API's errors: a code clients match on, a message people read, and the HTTP status.
//! Rendered as `<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>
//! <RequestID>…</RequestID></Response>` (see `xml.rs`).

use hyper::StatusCode;

/// One EC2 error. Codes are AWS's, so SDK retry and not-found logic (Terraform's waiters
/// included) behaves as against AWS.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub status: StatusCode,
}

impl ApiError {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status,
        }
    }

    fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, StatusCode::BAD_REQUEST, message)
    }

    // Authentication and authorization (403, as AWS answers them).

    pub fn auth_failure(message: impl Into<String>) -> Self {
        Self::new("AuthFailure", StatusCode::FORBIDDEN, message)
    }

    pub fn signature_does_not_match(message: impl Into<String>) -> Self {
        Self::new("SignatureDoesNotMatch", StatusCode::FORBIDDEN, message)
    }

    pub fn unauthorized_operation() -> Self {
        Self::new(
            "UnauthorizedOperation",
            StatusCode::FORBIDDEN,
            "You are not authorized to perform this operation.",
        )
    }

    /// The answer to a request with `DryRun=true` that would have succeeded.
    pub fn dry_run_operation() -> Self {
        Self::new(
            "DryRunOperation",
            StatusCode::PRECONDITION_FAILED,
            "Request would have succeeded, but DryRun flag is set.",
        )
    }

    // The request itself.

    pub fn missing_parameter(name: &str) -> Self {
        Self::client(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    pub fn invalid_parameter_value(name: &str, value: &str, why: impl std::fmt::Display) -> Self {
        Self::client(
            "InvalidParameterValue",
            format!("Value ({value}) for parameter {name} is invalid. {why}"),
        )
    }

    /// A problem with a parameter that is not about one value (combinations, counts).
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterValue", message)
    }

    pub fn invalid_parameter_combination(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterCombination", message)
    }

    pub fn unknown_parameter(name: &str) -> Self {
        Self::client(
            "UnknownParameter",
            format!("The parameter {name} is not recognized"),
        )
    }

    pub fn invalid_action(action: &str) -> Self {
        Self::client(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )
    }

    pub fn request_too_large(limit: usize) -> Self {
        Self::new(
            "RequestEntityTooLarge",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body exceeds {limit} bytes."),
        )
    }

    pub fn too_many_parameters(limit: usize) -> Self {
        Self::client(
            "InvalidParameterValue",
            format!("The request has more than {limit} parameters."),
        )
    }

    // Objects that do not exist.

    pub fn group_not_found(group: &str) -> Self {
        Self::client(
            "InvalidGroup.NotFound",
            format!("The security group '{group}' does not exist"),
        )
    }

    pub fn prefix_list_not_found(list: &str) -> Self {
        Self::client(
            "InvalidPrefixListID.NotFound",
            format!("The prefix list ID '{list}' does not exist"),
        )
    }

    pub fn group_name_not_found(name: &str, vpc: &str) -> Self {
        Self::client(
            "InvalidGroup.NotFound",
            format!("The security group '{name}' does not exist in VPC '{vpc}'"),
        )
    }

    pub fn rule_id_not_found(rule: &str) -> Self {
        Self::client(
            "InvalidSecurityGroupRuleId.NotFound",
            format!("The security group rule ID '{rule}' does not exist"),
        )
    }

    pub fn permission_not_found() -> Self {
        Self::client(
            "InvalidPermission.NotFound",
            "The specified rule does not exist in this security group.",
        )
    }

    pub fn interface_not_found(eni: &str) -> Self {
        Self::client(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{eni}' does not exist"),
        )
    }

    pub fn vpc_not_found(vpc: &str) -> Self {
        Self::client(
            "InvalidVpcID.NotFound",
            format!("The vpc ID '{vpc}' does not exist"),
        )
    }

    pub fn invalid_id(id: &str) -> Self {
        Self::client("InvalidID", format!("The ID '{id}' is not valid"))
    }

    // What AWS refuses to do.

    pub fn group_duplicate(name: &str, vpc: &str) -> Self {
        Self::client(
            "InvalidGroup.Duplicate",
            format!("The security group '{name}' already exists for VPC '{vpc}'"),
        )
    }

    pub fn permission_duplicate(rule: &str) -> Self {
        Self::client(
            "InvalidPermission.Duplicate",
            format!("the specified rule \"{rule}\" already exists"),
        )
    }

    pub fn dependency_violation(group: &str, why: &str) -> Self {
        Self::client(
            "DependencyViolation",
            format!("resource {group} has a dependent object ({why})"),
        )
    }

    pub fn cannot_delete_default(group: &str) -> Self {
        Self::client(
            "CannotDelete",
            format!(
                "the specified group: \"{group}\" name: \"default\" cannot be deleted by a user"
            ),
        )
    }

    pub fn rules_limit_exceeded(detail: &str) -> Self {
        Self::client(
            "RulesPerSecurityGroupLimitExceeded",
            format!("The maximum number of rules per security group has been reached. ({detail})"),
        )
    }

    pub fn groups_per_interface_limit_exceeded(detail: &str) -> Self {
        Self::client(
            "SecurityGroupsPerInterfaceLimitExceeded",
            format!(
                "The maximum number of security groups per interface has been reached. ({detail})"
            ),
        )
    }

    /// The store changed under a write more often than retries allow, or could not be read.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new("Unavailable", StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_errors_are_403_dry_run_412_and_the_rest_400() {
        assert_eq!(ApiError::auth_failure("x").status, StatusCode::FORBIDDEN);
        assert_eq!(
            ApiError::signature_does_not_match("x").status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::unauthorized_operation().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::dry_run_operation().status,
            StatusCode::PRECONDITION_FAILED
        );
        for error in [
            ApiError::missing_parameter("GroupId"),
            ApiError::group_not_found("sg-1"),
            ApiError::permission_duplicate("x"),
            ApiError::rules_limit_exceeded("x"),
        ] {
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{error}");
        }
        assert_eq!(
            ApiError::missing_parameter("GroupName").message,
            "The request must contain the parameter GroupName"
        );
    }
}
