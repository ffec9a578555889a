//! Every sender (issue 3): GitLab, Bitbucket Cloud and Data Center, Gitea/Forgejo, Standard
//! Webhooks, the configurable HMAC header and `Authorization` credentials — each with its real
//! example payloads from `tests/fixtures/`, good and bad signatures, redelivery of its own
//! delivery id, and the body checks that answer 400/415.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::*;

const TOKEN: &str = "multi-token-123456";
const SECRET: &str = "It's a Secret to Everybody";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One app verifying every sender, with a service following each fixture's repository.
const MULTI: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.multi]
token = "multi-token-123456"

[apps.multi.verify]
gitlab = "It's a Secret to Everybody"
bitbucket = "It's a Secret to Everybody"
gitea = ["an old secret", "IsWishesWereHorsesWedAllBeEatingSteak!"]
standard = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Registries sign nothing: they send this as `Authorization: Bearer …`.
bearer = "registry-bearer"

[apps.multi.services.gl]
git = { repo = "mike/diaspora", branch = "master" }
command = ["{dir}/deploy.sh"]

[apps.multi.services.gltags]
git = { repo = "jsmith/example", tags = "v*" }
command = ["{dir}/deploy.sh"]

[apps.multi.services.bbc]
git = { repo = "team_name/repo_name", branch = "name-of-branch", tags = "release-*" }
command = ["{dir}/deploy.sh"]

[apps.multi.services.bbs]
git = { repo = "MYPROJECT/test-repo", branch = "master" }
command = ["{dir}/deploy.sh"]

[apps.multi.services.gt]
git = { repo = "example/example", branch = "master" }
command = ["{dir}/deploy.sh"]
"#;

async fn multi() -> Ferry {
    Ferry::with_config(MULTI).start().await
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `v1,<base64 HMAC-SHA256(key, id.ts.body)>` with a `whsec_` secret.
fn standard_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The deployment of `service` caused by `delivery`, once every deployment it caused ended.
async fn deployed(ferry: &Ferry, delivery: i64, service: &str) -> Value {
    let all = ferry.settle(delivery).await;
    all.into_iter()
        .find(|d| d["service"] == service)
        .unwrap_or_else(|| panic!("delivery {delivery} caused no deployment of {service}"))
}

// ---- GitLab ----------------------------------------------------------------------------------

#[tokio::test]
async fn gitlab_push_deploys_checkout_sha_and_redelivery_is_a_duplicate() {
    let ferry = multi().await;
    let reply = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .send()
        .await;
    let id = reply.accepted();
    let d = deployed(&ferry, id, "gl").await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(d["commit"], "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["source"], "gitlab");
    assert_eq!(delivery["event"], "Push Hook");
    assert_eq!(delivery["verified"], true);
    assert_eq!(
        delivery["source_delivery_id"], "00000000-0000-4000-8000-00000000b101",
        "Idempotency-Key is GitLab's stable delivery id"
    );
    let again = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .send()
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(again.json()["delivery_id"], id);
    ferry.settled("multi").await;
    assert_eq!(ferry.runs_of("gl").len(), 1);
}

#[tokio::test]
async fn gitlab_wrong_or_missing_token_is_401() {
    let ferry = multi().await;
    let wrong = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .header("X-Gitlab-Token", "guess")
        .send()
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(wrong.error().contains("X-Gitlab-Token"), "{}", wrong.text);
    let missing = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .without_header("X-Gitlab-Token")
        .send()
        .await;
    assert_eq!(missing.status, 401, "{}", missing.text);
    ferry.settled("multi").await;
    assert!(ferry.runs().is_empty());
}

#[tokio::test]
async fn gitlab_tag_push_deploys_the_tag_to_services_following_tags() {
    let ferry = multi().await;
    let id = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/tag-push")
        .send()
        .await
        .accepted();
    let d = deployed(&ferry, id, "gltags").await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(d["git_ref"], "refs/tags/v1.0.0");
    let env = ferry.run_env(d["id"].as_i64().expect("id"));
    assert_eq!(
        env.get("FERRY_GIT_REF").map(String::as_str),
        Some("refs/tags/v1.0.0")
    );
    assert_eq!(
        env.get("FERRY_GIT_COMMIT").map(String::as_str),
        Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
    );
    assert!(!env.contains_key("FERRY_GIT_BRANCH"), "{env:?}");
}

#[tokio::test]
async fn gitlab_branch_deletion_deploys_nothing() {
    let ferry = multi().await;
    let body = json!({
        "object_kind": "push", "ref": "refs/heads/master",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": "0000000000000000000000000000000000000000", "checkout_sha": null,
        "project": {"path_with_namespace": "mike/diaspora"}, "commits": [], "total_commits_count": 0
    });
    let id = ferry
        .hook("multi")
        .token(TOKEN)
        .json(&body)
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", SECRET)
        .send()
        .await
        .accepted();
    let d = deployed(&ferry, id, "gl").await;
    assert_eq!(d["state"], "skipped", "{d:#}");
    assert!(
        d["reason"].as_str().unwrap_or("").contains("deleted"),
        "{d:#}"
    );
    ferry.settled("multi").await;
    assert!(ferry.runs().is_empty());
}

#[tokio::test]
async fn gitlab_signing_token_uses_standard_webhooks() {
    let signing = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let config = MULTI.replace(
        "gitlab = \"It's a Secret to Everybody\"",
        &format!("gitlab = \"{signing}\""),
    );
    let ferry = Ferry::with_config(&config).start().await;
    let fx = fixture("gitlab/push.signing-token");
    let ts = now_secs();
    let sig = standard_signature(signing, "gl-msg-1", ts, &fx.body);
    let good = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push.signing-token")
        .header("webhook-id", "gl-msg-1")
        .header("webhook-timestamp", &ts.to_string())
        .header("webhook-signature", &sig)
        .send()
        .await;
    deployed(&ferry, good.accepted(), "gl").await;
    // The fixture's own signature is from 2026-01-01: far outside the tolerance.
    let replay = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push.signing-token")
        .header("Idempotency-Key", "another")
        .send()
        .await;
    assert_eq!(replay.status, 401, "{}", replay.text);
    assert!(
        replay.error().contains("webhook-timestamp"),
        "{}",
        replay.text
    );
}

// ---- Bitbucket -------------------------------------------------------------------------------

#[tokio::test]
async fn bitbucket_cloud_push_fixture_and_redelivery() {
    let ferry = multi().await;
    let id = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("bitbucket-cloud/repo-push")
        .send()
        .await
        .accepted();
    let d = deployed(&ferry, id, "bbc").await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(d["commit"], "709d658dc5b6d6afcd46049c2f332ee3f515a67d");
    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["source"], "bitbucket");
    assert_eq!(delivery["verified"], true);
    let again = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("bitbucket-cloud/repo-push")
        .send()
        .await;
    assert_eq!(again.json()["status"], "duplicate", "{}", again.text);
    // A forged body under the fixture's signature.
    let forged = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("bitbucket-cloud/repo-push")
        .header("X-Request-UUID", "forged-1")
        .body(fixture("bitbucket-cloud/repo-push").body[1..].to_vec())
        .send()
        .await;
    assert_eq!(forged.status, 401, "{}", forged.text);
    assert!(
        forged.error().contains("X-Hub-Signature"),
        "{}",
        forged.text
    );
}

#[tokio::test]
async fn bitbucket_push_with_several_branches_and_tags() {
    let ferry = multi().await;
    let change = |kind: &str, name: &str, hash: &str| {
        json!({"new": {"type": kind, "name": name, "target": {"hash": hash, "date": "2024-05-01T10:00:00+00:00"}},
               "old": null, "forced": false, "created": true, "closed": false})
    };
    let body = json!({
        "repository": {"full_name": "team_name/repo_name"},
        "push": {"changes": [
            change("branch", "other-branch", "1111111111111111111111111111111111111111"),
            change("tag", "release-7", "2222222222222222222222222222222222222222"),
            {"new": null, "old": {"type": "branch", "name": "stale"}, "closed": true},
        ]}
    })
    .to_string();
    let id = ferry
        .hook("multi")
        .token(TOKEN)
        .header("Content-Type", "application/json")
        .header("X-Event-Key", "repo:push")
        .header("X-Request-UUID", "multi-change-1")
        .header(
            "X-Hub-Signature",
            &format!("sha256={}", hex_hmac(SECRET, body.as_bytes())),
        )
        .body(body)
        .send()
        .await
        .accepted();
    // bbc follows branch name-of-branch and tags release-*: the tag in this push deploys.
    let d = deployed(&ferry, id, "bbc").await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(d["git_ref"], "refs/tags/release-7");
    assert_eq!(d["commit"], "2222222222222222222222222222222222222222");
}

#[tokio::test]
async fn bitbucket_data_center_update_and_delete() {
    let ferry = multi().await;
    let id = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("bitbucket-server/repo-refs-changed-branch-updated")
        .send()
        .await
        .accepted();
    let d = deployed(&ferry, id, "bbs").await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(d["commit"], "22671f0349857934857983457983475ec39f196b");
    ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("bitbucket-server/repo-refs-changed-branch-deleted")
        .deliver()
        .await;
    ferry.settled("multi").await;
    assert_eq!(ferry.runs().len(), 1, "the deletion deployed nothing");
}

// ---- Gitea / Forgejo -------------------------------------------------------------------------

#[tokio::test]
async fn gitea_and_forgejo_pushes_verify_and_dedupe() {
    let ferry = multi().await;
    let id = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitea/push")
        .send()
        .await
        .accepted();
    let d = deployed(&ferry, id, "gt").await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(d["commit"], "67b56589a45103f891bdee7c0546e5d40bc02001");
    let delivery = ferry.delivery(id).await;
    assert_eq!(
        delivery["source"], "gitea",
        "Gitea also sends GitHub's headers"
    );
    assert_eq!(
        delivery["verified"], true,
        "the second configured secret matched"
    );
    // Forgejo's redelivery of the same hook task is a duplicate.
    let again = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitea/push.forgejo")
        .send()
        .await;
    assert_eq!(again.json()["status"], "duplicate", "{}", again.text);
    let bad = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitea/push.forgejo")
        .header("X-Forgejo-Delivery", "fresh-id")
        .header("X-Forgejo-Signature", &hex_hmac("wrong", b"x"))
        .send()
        .await;
    assert_eq!(bad.status, 401, "{}", bad.text);
    assert!(bad.error().contains("X-Forgejo-Signature"), "{}", bad.text);
}

// ---- Standard Webhooks -----------------------------------------------------------------------

#[tokio::test]
async fn standard_webhooks_verify_dedupe_and_refuse_replays() {
    let ferry = multi().await;
    let body = br#"{"type":"deploy.requested","timestamp":"now","data":{}}"#;
    let ts = now_secs();
    let sig = standard_signature(STANDARD_SECRET, "msg_live_1", ts, body);
    let send = |id: &str, ts: i64, sig: String| {
        ferry
            .hook("multi")
            .token(TOKEN)
            .header("Content-Type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", &ts.to_string())
            // A decoy from a rotated key and an unknown version around the good one.
            .header(
                "webhook-signature",
                &format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1a,xyz {sig}"),
            )
            .body(body.to_vec())
            .send()
    };
    let id = send("msg_live_1", ts, sig.clone()).await.accepted();
    let delivery = ferry.wait_planned(id).await;
    assert_eq!(delivery["source"], "standard");
    assert_eq!(delivery["verified"], true);
    assert_eq!(delivery["source_delivery_id"], "msg_live_1");
    // No git information: every service is redeployed.
    assert_eq!(ferry.settle(id).await.len(), 5);
    let again = send("msg_live_1", ts, sig).await;
    assert_eq!(again.json()["status"], "duplicate", "{}", again.text);

    // The published vectors are from 2021/2022: replays far outside the 5-minute tolerance.
    let replay = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("standard-webhooks/vector-py-js-go")
        .send()
        .await;
    assert_eq!(replay.status, 401, "{}", replay.text);
    assert!(
        replay.error().contains("webhook-timestamp"),
        "{}",
        replay.text
    );
    // Future-dated messages too.
    let future = now_secs() + 3600;
    let sig = standard_signature(STANDARD_SECRET, "msg_future", future, body);
    let r = send("msg_future", future, sig).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // A bad signature with a fresh timestamp.
    let r = send("msg_bad", now_secs(), "v1,AAAA".into()).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.error().contains("webhook-signature"), "{}", r.text);
}

// ---- Generic schemes and `require` -----------------------------------------------------------

const GENERIC: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.ci]
token = "ci-token-123456789"
[apps.ci.verify]
hmac = { header = "X-Signature", algorithm = "sha512", encoding = "base64", prefix = "sha512=", secret = "ci-secret" }
[apps.ci.services.app]
command = ["{dir}/deploy.sh"]

[apps.registry]
token = "registry-token-12345"
[apps.registry.verify]
bearer = "registry-bearer"
basic = "alertmanager:pa55word"
[apps.registry.services.app]
command = ["{dir}/deploy.sh"]

[apps.strict]
token = "strict-token-1234567"
[apps.strict.verify]
require = true
github = "It's a Secret to Everybody"
[apps.strict.services.app]
command = ["{dir}/deploy.sh"]
"#;

#[tokio::test]
async fn configurable_hmac_header() {
    let ferry = Ferry::with_config(GENERIC).start().await;
    let body = b"<build status=\"ok\"/>";
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(b"ci-secret").expect("key");
    mac.update(body);
    let sig = format!("sha512={}", STANDARD.encode(mac.finalize().into_bytes()));
    let ok = ferry
        .hook("ci")
        .token("ci-token-123456789")
        .header("Content-Type", "application/xml")
        .header("X-Signature", &sig)
        .body(body.to_vec())
        .send()
        .await;
    let id = ok.accepted();
    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["verified"], true);
    assert_eq!(
        delivery["body"], "<build status=\"ok\"/>",
        "XML is stored as received"
    );
    let unsigned = ferry.hook("ci").token("ci-token-123456789").send().await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.text);
    assert!(
        unsigned.error().contains("X-Signature"),
        "{}",
        unsigned.text
    );
    let wrong = ferry
        .hook("ci")
        .token("ci-token-123456789")
        .header("X-Signature", &sig)
        .body(b"<build status=\"forged\"/>".to_vec())
        .send()
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
}

#[tokio::test]
async fn bearer_and_basic_credentials() {
    let ferry = Ferry::with_config(GENERIC).start().await;
    let send = |auth: Option<&str>| {
        let mut r = ferry.hook("registry").token("registry-token-12345");
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send()
    };
    assert_eq!(send(Some("Bearer registry-bearer")).await.status, 202);
    let basic = format!("Basic {}", STANDARD.encode("alertmanager:pa55word"));
    assert_eq!(send(Some(&basic)).await.status, 202);
    assert_eq!(send(Some("Bearer nope")).await.status, 401);
    assert_eq!(send(None).await.status, 401);
    // Credentials are never stored with the delivery: only that they were sent.
    for d in ferry.deliveries("app=registry").await {
        let full = ferry.delivery(d["id"].as_i64().expect("id")).await;
        let stored = full["headers"]
            .get("authorization")
            .and_then(|v| v.as_str());
        assert!(matches!(stored, None | Some("[redacted]")), "{full:#}");
    }
}

#[tokio::test]
async fn require_refuses_deliveries_signed_by_nothing() {
    let ferry = Ferry::with_config(GENERIC).start().await;
    let plain = ferry
        .hook("strict")
        .token("strict-token-1234567")
        .send()
        .await;
    assert_eq!(plain.status, 401, "{}", plain.text);
    assert!(
        plain.error().contains("requires a verified delivery"),
        "{}",
        plain.text
    );
    let body = push_payload("a/b", "main", &sha(1), &commit_time(1));
    let signed = ferry
        .hook("strict")
        .token("strict-token-1234567")
        .github("push")
        .body(body)
        .signed(SECRET)
        .send()
        .await;
    assert_eq!(signed.status, 202, "{}", signed.text);
}

// ---- Bodies ----------------------------------------------------------------------------------

#[tokio::test]
async fn unreadable_bodies_and_wrong_content_types_are_refused_and_recorded() {
    let ferry = multi().await;
    let fx = fixture("gitlab/push");
    let truncated = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .body(fx.body[..fx.body.len() / 2].to_vec())
        .send()
        .await;
    assert_eq!(truncated.status, 400, "{}", truncated.text);
    assert!(truncated.error().contains("gitlab"), "{}", truncated.text);
    let xml = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .header("Idempotency-Key", "xml-1")
        .header("Content-Type", "application/xml")
        .send()
        .await;
    assert_eq!(xml.status, 415, "{}", xml.text);
    assert!(xml.error().contains("application/json"), "{}", xml.text);
    let rejected = ferry.deliveries("app=multi").await;
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected.iter().all(|d| d["status"] == "rejected"),
        "{rejected:#?}"
    );
    // Neither blocks the good delivery with the same idempotency key.
    let good = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("gitlab/push")
        .send()
        .await;
    assert_eq!(good.status, 202, "{}", good.text);
    ferry.settled("multi").await;
    assert_eq!(ferry.runs().len(), 1);
}

// ---- Order across sources --------------------------------------------------------------------

#[tokio::test]
async fn an_older_event_from_another_sender_is_stale() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"
[apps.app]
token = "app-token-1234567"
[apps.app.services.web]
git = { repo = "acme/app", branch = "main" }
command = ["{dir}/deploy.sh"]
"#;
    let ferry = Ferry::with_config(config).start().await;
    // GitHub push of a commit made at t=20.
    ferry
        .hook("app")
        .token("app-token-1234567")
        .github("push")
        .body(push_payload("acme/app", "main", &sha(20), &commit_time(20)))
        .deliver()
        .await;
    // A GitLab mirror reports an older commit (t=10) afterwards.
    let gitlab = json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": sha(10), "checkout_sha": sha(10),
        "project": {"path_with_namespace": "acme/app"},
        "commits": [{"id": sha(10), "timestamp": commit_time(10)}]
    });
    let older = ferry
        .hook("app")
        .token("app-token-1234567")
        .json(&gitlab)
        .header("X-Gitlab-Event", "Push Hook")
        .send()
        .await
        .accepted();
    let d = deployed(&ferry, older, "web").await;
    assert_eq!(d["state"], "skipped", "{d:#}");
    assert!(
        d["reason"].as_str().unwrap_or("").contains("stale"),
        "{d:#}"
    );
    assert_eq!(ferry.runs().len(), 1);
}

// ---- ferry hooks -----------------------------------------------------------------------------

#[tokio::test]
async fn hooks_prints_settings_for_each_configured_sender() {
    let ferry = multi().await;
    let out = Cli::new(&[
        "hooks",
        "--config",
        ferry.config_path().to_str().expect("utf-8"),
    ])
    .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
    .run()
    .await;
    let text = out.success();
    assert!(text.contains(&format!("/hooks/multi/{TOKEN}")), "{text}");
    for needle in [
        "GitLab",
        "Secret token",
        "Bitbucket",
        "Gitea/Forgejo",
        "Standard Webhooks",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    assert!(
        !text.contains(SECRET),
        "secrets only with --show-secrets:\n{text}"
    );
    assert!(
        !text.contains("GitHub ("),
        "GitHub is not configured for this app:\n{text}"
    );
}

// ---- Registries (recognised and stored; deploying images is issue 5) --------------------------

#[tokio::test]
async fn registry_notifications_are_recognised_and_hinted_sources_too() {
    let ferry = multi().await;
    let reply = ferry
        .hook("multi")
        .token(TOKEN)
        .fixture("distribution/push-envelope-3-events")
        .header("Authorization", "Bearer registry-bearer")
        .send()
        .await;
    let id = reply.accepted();
    let d = ferry.wait_planned(id).await;
    assert_eq!(d["source"], "registry", "{d:#}");
    let hinted = ferry
        .hook("multi")
        .token(TOKEN)
        .query("source=dockerhub")
        .fixture("dockerhub/push")
        .header("Authorization", "Bearer registry-bearer")
        .send()
        .await
        .accepted();
    assert_eq!(ferry.wait_planned(hinted).await["source"], "dockerhub");
    let bogus = ferry
        .hook("multi")
        .token(TOKEN)
        .query("source=nexus")
        .send()
        .await;
    assert_eq!(bogus.status, 400, "{}", bogus.text);
    assert!(bogus.error().contains("dockerhub"), "{}", bogus.text);
    ferry.settled("multi").await;
    assert!(
        ferry.runs().is_empty(),
        "image pushes deploy nothing until image services exist"
    );
}
