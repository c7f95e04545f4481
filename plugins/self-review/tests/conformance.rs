//! What the host relies on from every analyzer (`murmur_plugin_api::testing::conformance`):
//! no panic and a timely return on an empty context, a long one, a 1 MB message and a
//! cancelled run, on every hook it subscribes to, and only injections the host accepts.

use murmur_plugin_api::testing::conformance;
use murmur_plugin_api::Config;

#[test]
fn self_review_meets_the_host_conformance_checks() {
    let report = conformance::<murmur_self_review::SelfReview>(Config::new(serde_json::json!({})));
    report.assert_ok();
    assert!(!report.passed.is_empty());
}
