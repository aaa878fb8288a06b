//! Named failpoints before and after every Kubernetes write and every call to an authorization
//! server (docs/reliability.md). With the `failpoints` cargo feature they are fail-rs points
//! configured from the `FAILPOINTS` environment variable (`name=action;name=action`, read once
//! by [`setup`] at start-up); without it [`hit`] is an empty `async fn` the compiler removes.
//!
//! Actions (fail-rs syntax, see docs/reliability.md):
//! - `return(abort)`: the process aborts on the spot (SIGABRT, no unwinding, no cleanup): a
//!   crash. fail-rs's own `panic` only ends the tokio task that hits it, so it is not a crash.
//! - `return` or `return(error)`: the effect fails with an injected transient error (for an
//!   `after_*` point: the effect happened, the answer is lost).
//! - `return(sleep:<ms>)`: the effect waits `<ms>` milliseconds (asynchronously) first.
//! - `off`, `N*action`, `P%action`: as in fail-rs (`1*return(abort)` fires once).

/// Where a failpoint sits relative to its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Before the effect starts (after any rate-limiter wait, for an AS call).
    Before,
    /// After the effect completed, before its result is used (persisted, returned).
    After,
}

/// Every failpoint, in the order docs/reliability.md lists them. `*_post`/`*_put`/`*_get`/
/// `*_delete` are RFC 7591/7592 calls; `apply_*` are server-side applies of the client's objects.
pub const NAMES: &[&str] = &[
    // Kubernetes writes (reconcile/effects.rs).
    "before_apply_keys",
    "after_apply_keys",
    "before_apply_registration",
    "after_apply_registration",
    "before_apply_credentials",
    "after_apply_credentials",
    "before_apply_jwks",
    "after_apply_jwks",
    "before_add_finalizer",
    "after_add_finalizer",
    // The TppClient's status (reconcile/status.rs).
    "before_apply_status",
    "after_apply_status",
    // Deletion (reconcile/cleanup.rs): the finalizer of the client's Secrets, then its own.
    "before_release_secret",
    "after_release_secret",
    "before_remove_finalizer",
    "after_remove_finalizer",
    // Events (event_recorder.rs), every controller's.
    "before_publish_event",
    "after_publish_event",
    // The status of an AuthorizationServer or ClusterAuthorizationServer (reconcile/server_status.rs).
    "before_apply_server_status",
    "after_apply_server_status",
    // The restart stamp on a workload of `spec.consumers.restartTargets` (consumers/restart.rs).
    "before_restart_consumer",
    "after_restart_consumer",
    // Calls to the authorization server (oauth/transport.rs, one per step).
    "before_discovery",
    "after_discovery",
    "before_registration_post",
    "after_registration_post",
    "before_registration_get",
    "after_registration_get",
    "before_registration_put",
    "after_registration_put",
    "before_registration_delete",
    "after_registration_delete",
    "before_hub_onboarding",
    "after_hub_onboarding",
    "before_token",
    "after_token",
    "before_introspection",
    "after_introspection",
    "before_revocation",
    "after_revocation",
    "before_pushed_authorization",
    "after_pushed_authorization",
];

/// The name of the failpoint at `side` of `effect` (e.g. `registration_post`), from [`NAMES`].
pub fn name(side: Side, effect: &str) -> &'static str {
    let prefix = match side {
        Side::Before => "before_",
        Side::After => "after_",
    };
    NAMES
        .iter()
        .copied()
        .find(|n| n.strip_prefix(prefix) == Some(effect))
        .unwrap_or("unknown_failpoint")
}

/// A failure a failpoint injected (`return` / `return(error)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("failpoint {0} injected a failure")]
pub struct Injected(pub &'static str);

/// Evaluates the failpoint at `side` of the Kubernetes write `effect`: an injected failure
/// reads as an API server that answered 503 (for an `after_*` point: the write happened, its
/// answer was lost).
pub async fn kube_write(side: Side, effect: &'static str) -> Result<(), kube::Error> {
    hit(name(side, effect)).await.map_err(|i| {
        kube::Error::Api(
            kube::core::Status {
                code: 503,
                message: i.to_string(),
                reason: "ServiceUnavailable".into(),
                ..Default::default()
            }
            .boxed(),
        )
    })
}

/// Configures the failpoints from `FAILPOINTS`; keep the guard for the life of the process.
/// Without the `failpoints` feature: nothing (and `None`).
#[cfg(feature = "failpoints")]
pub fn setup() -> Option<fail::FailScenario<'static>> {
    let configured = std::env::var("FAILPOINTS").ok().filter(|v| !v.is_empty());
    let scenario = fail::FailScenario::setup();
    if let Some(spec) = configured {
        tracing::warn!(failpoints = %spec, "failpoints configured (a test build)");
    }
    Some(scenario)
}

/// Configures the failpoints from `FAILPOINTS`; keep the guard for the life of the process.
/// Without the `failpoints` feature: nothing (and `None`).
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Option<()> {
    if std::env::var_os("FAILPOINTS").is_some_and(|v| !v.is_empty()) {
        tracing::warn!(
            "FAILPOINTS is set but this build has no failpoints (cargo feature `failpoints`): ignored"
        );
    }
    None
}

/// What a configured failpoint asks for.
#[derive(Debug, PartialEq, Eq)]
enum Act {
    Abort,
    Error,
    Sleep(u64),
}

fn act(arg: Option<&str>) -> Act {
    match arg.map(str::trim) {
        Some("abort") => Act::Abort,
        Some(a) if a.starts_with("sleep:") => Act::Sleep(a[6..].trim().parse().unwrap_or(0)),
        _ => Act::Error,
    }
}

/// Evaluates failpoint `name`: aborts the process, fails, delays, or (not configured, or the
/// feature off) returns at once.
#[cfg(feature = "failpoints")]
pub async fn hit(name: &'static str) -> Result<(), Injected> {
    let Some(arg) = fail::eval(name, |arg| arg) else {
        return Ok(());
    };
    match act(arg.as_deref()) {
        Act::Abort => {
            // stderr, not tracing: the process ends before a log line could be flushed.
            eprintln!("failpoint {name}: aborting the process");
            std::process::abort();
        }
        Act::Error => {
            tracing::warn!(failpoint = name, "failpoint injected a failure");
            Err(Injected(name))
        }
        Act::Sleep(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(())
        }
    }
}

/// Evaluates failpoint `name`: without the `failpoints` feature, nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hit(_name: &'static str) -> Result<(), Injected> {
    let _ = act;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failpoint_has_a_before_and_an_after_and_a_unique_name() {
        let mut seen = std::collections::BTreeSet::new();
        for n in NAMES {
            assert!(seen.insert(*n), "{n} twice");
            let (side, effect) = match n.strip_prefix("before_") {
                Some(e) => (Side::After, e),
                None => (
                    Side::Before,
                    n.strip_prefix("after_").expect("before_ or after_"),
                ),
            };
            assert_ne!(name(side, effect), "unknown_failpoint", "{n} has no pair");
        }
    }

    #[test]
    fn every_failpoint_is_documented_in_the_reliability_guide() {
        let doc = include_str!("../../docs/reliability.md");
        for n in NAMES {
            assert!(
                doc.contains(&format!("`{n}`")),
                "{n} missing from docs/reliability.md"
            );
        }
    }

    #[test]
    fn return_arguments_select_abort_error_or_an_asynchronous_sleep() {
        assert_eq!(act(Some("abort")), Act::Abort);
        assert_eq!(act(None), Act::Error);
        assert_eq!(act(Some("error")), Act::Error);
        assert_eq!(act(Some("sleep:250")), Act::Sleep(250));
    }

    #[cfg(feature = "failpoints")]
    #[tokio::test]
    async fn a_configured_failpoint_injects_an_error_once_and_then_lets_the_effect_through() {
        // A name no effect uses: the test cannot disturb another test's effects.
        let _ = fail::cfg("unit_test_point", "1*return(error)");
        assert_eq!(
            hit("unit_test_point").await,
            Err(Injected("unit_test_point"))
        );
        assert_eq!(hit("unit_test_point").await, Ok(()));
        fail::remove("unit_test_point");
    }
}
