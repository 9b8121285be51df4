//! AWS Signature Version 4, as the server checks it: rebuild the canonical request from what
//! arrived, derive the signing key from the caller's secret, and compare signatures in constant
//! time. The construction follows AWS's "Create a signed AWS API request"; the HMAC and SHA-256
//! are the `hmac` and `sha2` crates'.
//!
//! Only the `Authorization` header form is accepted (every SDK and the CLI use it for EC2).

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use super::{
    credentials::{Credentials, Principal},
    error::ApiError,
};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's time may be from ours, as AWS allows.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// What the signature covers, as received.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Every header; names in any case.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Who signed the request, and the scope they signed it for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub region: String,
    pub service: String,
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn header<'a>(request: &SignedRequest<'a>, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
}

fn malformed(what: &str) -> ApiError {
    ApiError::auth_failure(format!(
        "Authorization header is malformed: {what}. AWS was not able to validate the provided access credentials"
    ))
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| malformed("the algorithm is not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a component has no '='"))?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(malformed("an unknown component")),
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(malformed(
            "Credential is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let signed_headers: Vec<&str> = signed_headers
        .ok_or_else(|| malformed("no SignedHeaders"))?
        .split(';')
        .collect();
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature: signature.ok_or_else(|| malformed("no Signature"))?,
    })
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 wants.
const SIGV4_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    if keep_slash {
        text.split(|b| *b == b'/')
            .map(|segment| percent_encoding::percent_encode(segment, SIGV4_ENCODE).to_string())
            .collect::<Vec<_>>()
            .join("/")
    } else {
        percent_encoding::percent_encode(text, SIGV4_ENCODE).to_string()
    }
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| {
            (
                uri_encode(name.as_bytes(), false),
                uri_encode(value.as_bytes(), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Values of one header joined by commas, trimmed, inner runs of spaces collapsed.
fn canonical_header_value(request: &SignedRequest<'_>, name: &str) -> Option<String> {
    let values: Vec<String> = request
        .headers
        .iter()
        .filter(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[&str],
) -> Result<String, ApiError> {
    let mut headers = String::new();
    for name in signed_headers {
        let value = canonical_header_value(request, name).ok_or_else(|| {
            ApiError::signature_does_not_match(format!(
                "The signed header {name} is not in the request."
            ))
        })?;
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        uri_encode(path.as_bytes(), true),
        canonical_query(request.query),
        headers,
        signed_headers.join(";"),
        hex::encode(Sha256::digest(request.body))
    ))
}

/// What the signature signs: the algorithm, the time, the scope (date, region, service) and
/// the canonical request's hash.
fn string_to_sign(
    amz_date: &str,
    (date, region, service): (&str, &str, &str),
    canonical: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

type HmacSha256 = Hmac<Sha256>;

/// `None` never happens (an HMAC takes keys of any length), but the crate's API says it may.
fn hmac(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().to_vec())
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Option<Vec<u8>> {
    let key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    let key = hmac(&key, region.as_bytes())?;
    let key = hmac(&key, service.as_bytes())?;
    hmac(&key, b"aws4_request")
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn parse_amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Checks the request's signature against `credentials` at time `now` (seconds since the
/// epoch). Unsigned, unknown, expired and malformed: `AuthFailure`; a wrong signature:
/// `SignatureDoesNotMatch`. Both 403.
pub fn verify(
    request: &SignedRequest<'_>,
    credentials: &Credentials,
    now: i64,
) -> Result<Caller, ApiError> {
    let Some(authorization) = header(request, "authorization") else {
        return Err(ApiError::auth_failure(
            "The request is not signed: it has no Authorization header (AWS Signature Version 4).",
        ));
    };
    let authorization = parse_authorization(authorization)?;
    let principal = credentials
        .get(authorization.access_key_id)
        .ok_or_else(|| {
            ApiError::auth_failure("AWS was not able to validate the provided access credentials")
        })?;
    let amz_date = header(request, "x-amz-date")
        .ok_or_else(|| ApiError::auth_failure("The request has no X-Amz-Date header."))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| ApiError::auth_failure(format!("X-Amz-Date {amz_date:?} is malformed.")))?;
    if !amz_date.starts_with(authorization.date) || authorization.date.len() != 8 {
        return Err(ApiError::auth_failure(
            "The date of the credential scope is not the date of X-Amz-Date.",
        ));
    }
    if (now - signed_at).abs() > MAX_SKEW_SECONDS {
        return Err(ApiError::auth_failure(format!(
            "Signature expired: {amz_date} is more than 15 minutes from the server's time."
        )));
    }
    let mut sorted = authorization.signed_headers.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != authorization.signed_headers
        || sorted
            .iter()
            .any(|name| name.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(malformed("SignedHeaders are not sorted lowercase names"));
    }
    if !sorted.contains(&"host") {
        return Err(malformed("SignedHeaders does not include host"));
    }
    if let Some(token) = &principal.session_token
        && header(request, "x-amz-security-token") != Some(token.as_str())
    {
        return Err(ApiError::auth_failure(
            "The security token included in the request is invalid.",
        ));
    }
    let canonical = canonical_request(request, &sorted)?;
    let string_to_sign = string_to_sign(
        amz_date,
        (
            authorization.date,
            authorization.region,
            authorization.service,
        ),
        &canonical,
    );
    let mismatch = || {
        ApiError::signature_does_not_match(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        )
    };
    let key = signing_key(
        &principal.secret_access_key,
        authorization.date,
        authorization.region,
        authorization.service,
    )
    .ok_or_else(mismatch)?;
    let given = hex::decode(authorization.signature).map_err(|_| mismatch())?;
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| mismatch())?;
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).map_err(|_| mismatch())?;
    Ok(Caller {
        principal: principal.clone(),
        region: authorization.region.to_string(),
        service: authorization.service.to_string(),
    })
}

/// The `Authorization` header a client with `secret` would send for `request` (tests sign
/// their requests with it; the AWS vectors in `tests` check the construction itself).
#[cfg(test)]
pub(crate) fn authorization_for(
    request: &SignedRequest<'_>,
    access_key_id: &str,
    secret: &str,
    amz_date: &str,
    scope: (&str, &str),
) -> String {
    let (region, service) = scope;
    let mut names: Vec<String> = request
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| name != "authorization")
        .collect();
    names.sort();
    names.dedup();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let date = &amz_date[..8];
    let canonical = canonical_request(request, &names).unwrap_or_default();
    let string_to_sign = string_to_sign(amz_date, (date, region, service), &canonical);
    let key = signing_key(secret, date, region, service).unwrap_or_default();
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()).unwrap_or_default());
    format!(
        "{ALGORITHM} Credential={access_key_id}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={signature}",
        names.join(";")
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn credentials() -> Credentials {
        Credentials::parse(
            &format!("[default]\naws_access_key_id=AKIDEXAMPLE\naws_secret_access_key={SECRET}\n"),
            Path::new("credentials"),
        )
        .expect("credentials")
    }

    /// AWS's SigV4 test suite, `get-vanilla` and `post-x-www-form-urlencoded`.
    const VANILLA_TIME: i64 = 1_440_938_160; // 2015-08-30T12:36:00Z

    fn vanilla(signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={signature}"
        )
    }

    fn get_vanilla(authorization: &str) -> SignedRequest<'_> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: vec![
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", authorization),
            ],
            body: b"",
        }
    }

    #[test]
    fn aws_test_suite_vectors_verify() {
        let authorization =
            vanilla("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        let caller = verify(&get_vanilla(&authorization), &credentials(), VANILLA_TIME)
            .expect("get-vanilla verifies");
        assert_eq!(
            (caller.region.as_str(), caller.service.as_str()),
            ("us-east-1", "service")
        );

        let authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a";
        let post = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", authorization),
            ],
            body: b"Param1=value1",
        };
        verify(&post, &credentials(), VANILLA_TIME).expect("post-x-www-form-urlencoded verifies");
    }

    /// Signed by botocore 1.43 (the aws CLI's own signer) for a local EC2 endpoint.
    #[test]
    fn a_botocore_signed_ec2_request_verifies() {
        let authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/ec2/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=af1405fef52649ff0381a9b5cde45a4c41feee84ef469a71a1ca639362a9a54b";
        let request = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("host", "127.0.0.1:8788"),
                ("x-amz-date", "20261203T125318Z"),
                ("authorization", authorization),
            ],
            body: b"Action=DescribeSecurityGroups&Version=2016-11-15",
        };
        let now = parse_amz_date("20261203T125318Z").expect("date");
        let caller = verify(&request, &credentials(), now).expect("verifies");
        assert_eq!(caller.service, "ec2");
        assert_eq!(caller.principal.profile, "default");
    }

    #[test]
    fn wrong_unsigned_unknown_and_expired_requests_fail_with_403_codes() {
        let good = vanilla("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        let code = |request: &SignedRequest<'_>, now| {
            verify(request, &credentials(), now)
                .expect_err("refused")
                .code
        };
        // One flipped digit of the signature.
        let flipped = vanilla("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30");
        assert_eq!(
            code(&get_vanilla(&flipped), VANILLA_TIME),
            "SignatureDoesNotMatch"
        );
        // The body changed after signing.
        let mut tampered = get_vanilla(&good);
        tampered.body = b"Action=DeleteSecurityGroup";
        assert_eq!(code(&tampered, VANILLA_TIME), "SignatureDoesNotMatch");
        // A signed header changed after signing.
        let mut moved = get_vanilla(&good);
        moved.headers[0].1 = "other.example.com";
        assert_eq!(code(&moved, VANILLA_TIME), "SignatureDoesNotMatch");
        // No Authorization header at all.
        let mut unsigned = get_vanilla(&good);
        unsigned.headers.pop();
        assert_eq!(code(&unsigned, VANILLA_TIME), "AuthFailure");
        // An access key the credentials file does not have.
        let unknown = good.replace("AKIDEXAMPLE", "AKIDOTHER");
        assert_eq!(code(&get_vanilla(&unknown), VANILLA_TIME), "AuthFailure");
        // Sixteen minutes late, and early.
        assert_eq!(
            code(&get_vanilla(&good), VANILLA_TIME + 16 * 60),
            "AuthFailure"
        );
        assert_eq!(
            code(&get_vanilla(&good), VANILLA_TIME - 16 * 60),
            "AuthFailure"
        );
        // Garbage in the header.
        assert_eq!(
            code(&get_vanilla("AWS4-HMAC-SHA256 nonsense"), VANILLA_TIME),
            "AuthFailure"
        );
        assert_eq!(
            code(&get_vanilla("Basic dXNlcjpwYXNz"), VANILLA_TIME),
            "AuthFailure"
        );
        for error in [
            ApiError::auth_failure("x"),
            ApiError::signature_does_not_match("x"),
        ] {
            assert_eq!(error.status, hyper::StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn amz_dates_parse_to_epoch_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(VANILLA_TIME));
        assert_eq!(parse_amz_date("20240229T000000Z"), Some(1_709_164_800));
        for bad in [
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "20150830T123600",
            "",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_query_strings_are_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1&c"), "a=1&a=x%20y&b=2&c=");
        assert_eq!(uri_encode(b"/a b/c~", true), "/a%20b/c~");
    }
}
