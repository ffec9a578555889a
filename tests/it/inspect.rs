//! The delivery inspector (issue 11): `GET /api/v1/deliveries/ID` says how a delivery came
//! (method, masked path, headers, body raw and pretty), who verified it, what the planner
//! read it as and what came of it — per deployment and per service, with reasons — and
//! `ferry deliveries ID` prints the same.

use serde_json::Value;

use crate::support::*;

/// The deployment of `service` in an inspection's outcomes.
fn outcome<'a>(i: &'a Value, service: &str) -> &'a Value {
    i["outcomes"]["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["service"] == service))
        .unwrap_or_else(|| panic!("no outcome for {service} in {i:#}"))
}

/// The newest refused delivery of `shop`.
async fn newest_rejected(ferry: &Ferry) -> i64 {
    let list = ferry.deliveries("app=shop").await;
    list.iter()
        .find(|d| d["status"] == "rejected")
        .and_then(|d| d["id"].as_i64())
        .unwrap_or_else(|| panic!("no rejected delivery in {list:#?}"))
}

#[tokio::test]
async fn a_signed_push_that_deploys_shows_request_scheme_event_and_outcomes() {
    let ferry = Ferry::shop().start().await;
    let commit = sha(1);
    let id = ferry.push("master", &commit, &commit_time(1)).await;
    ferry.settle(id).await;
    let i = ferry.delivery(id).await;

    // The request: a hook POST, its token masked everywhere.
    assert_eq!(i["request"]["method"], "POST", "{i:#}");
    assert_eq!(i["request"]["path"], "/hooks/shop/••••");
    assert!(
        !i.to_string().contains(HOOK_TOKEN),
        "the hook token leaked: {i:#}"
    );
    assert_eq!(i["request"]["headers"]["x-github-event"], "push");
    let body = &i["request"]["body"];
    assert_eq!(body["format"], "json");
    assert_eq!(body["truncated"], false);
    assert!(
        body["pretty"]
            .as_str()
            .unwrap()
            .contains("\n  \"ref\": \"refs/heads/master\""),
        "{body:#}"
    );

    // Verified by GitHub's signature, and the scheme is stored.
    assert_eq!(i["verification"]["scheme"], "github");
    assert_eq!(i["verification"]["summary"], "verified by github");
    assert_eq!(i["scheme"], "github");
    assert_eq!(ferry.deliveries("app=shop").await[0]["scheme"], "github");

    // Parsed as the planner read it.
    let change = &i["parsed"]["event"]["changes"][0];
    assert_eq!(i["parsed"]["event"]["kind"], "push", "{i:#}");
    assert_eq!(change["repository"], REPO);
    assert_eq!(change["branch"], "master");
    assert_eq!(change["commit"], commit.as_str());

    // What came of it: web deployed the commit; worker follows no repository.
    let web = outcome(&i, "web");
    assert_eq!(web["state"], "succeeded", "{i:#}");
    let deployed = i["outcomes"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["service"] == "web")
        .unwrap();
    assert_eq!(deployed["version"], commit.as_str());
    assert_eq!(deployed["id"], web["deployment"]);
    let worker = outcome(&i, "worker");
    assert_eq!(worker["state"], "skipped");
    assert!(
        worker["reason"]
            .as_str()
            .unwrap()
            .contains("does not follow a git repository"),
        "{worker:#}"
    );
    assert!(i["outcomes"]["why"].is_null());

    // The route's older fields are still there.
    assert_eq!(i["verified"], true);
    assert!(i["body"].as_str().unwrap().starts_with('{'));
    assert_eq!(i["deployments"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_push_to_another_branch_says_which_branch_the_service_follows() {
    let ferry = Ferry::shop().start().await;
    let id = ferry.push("feature/x", &sha(2), &commit_time(2)).await;
    ferry.settle(id).await;
    let i = ferry.delivery(id).await;
    assert_eq!(i["parsed"]["event"]["changes"][0]["branch"], "feature/x");
    let web = outcome(&i, "web");
    assert_eq!(web["state"], "skipped", "{i:#}");
    let reason = web["reason"].as_str().unwrap();
    assert!(
        reason.contains("feature/x") && reason.contains("master"),
        "{reason}"
    );
    assert!(ferry.runs_of("web").is_empty());
}

#[tokio::test]
async fn a_duplicate_is_counted_on_the_delivery_it_duplicates() {
    let ferry = Ferry::shop().start().await;
    let body = push_payload(REPO, "master", &sha(3), &commit_time(3));
    let send = || {
        ferry
            .hook("shop")
            .github("push")
            .body(body.clone())
            .signed(GITHUB_SECRET)
            .send()
    };
    let id = send().await.accepted();
    assert_eq!(ferry.delivery(id).await["duplicates"]["count"], 0);
    // GitHub's "redeliver" sends the same body under a new delivery id.
    let again = send().await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(again.delivery_id(), id);

    let i = ferry.delivery(id).await;
    assert_eq!(i["duplicates"]["count"], 1, "{i:#}");
    assert!(i["duplicates"]["last_at"].is_string(), "{i:#}");
    // Nothing new was stored.
    assert_eq!(ferry.deliveries("app=shop").await.len(), 1);
}

#[tokio::test]
async fn a_bad_signature_is_shown_as_the_verification_failure() {
    let ferry = Ferry::shop().start().await;
    let r = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(4), &commit_time(4)))
        .signed("not the secret")
        .send()
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let i = ferry.delivery(newest_rejected(&ferry).await).await;
    assert_eq!(i["status"], "rejected");
    assert_eq!(i["request"]["refused_with"], 401);
    let v = &i["verification"];
    assert_eq!(v["verified"], false, "{i:#}");
    assert!(v["scheme"].is_null());
    let failure = v["failure"].as_str().unwrap();
    assert!(
        failure.contains("X-Hub-Signature-256 does not match the body"),
        "{failure}"
    );
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("verification failed: ")
    );
    // Never planned: not parsed, nothing deployed, and the reason says so.
    assert!(i["parsed"]["event"].is_null());
    assert!(
        i["parsed"]["error"]
            .as_str()
            .unwrap()
            .contains("refused it at the hook")
    );
    assert_eq!(i["outcomes"]["deployments"], serde_json::json!([]));
    let why = i["outcomes"]["why"].as_str().unwrap();
    assert!(
        why.starts_with("rejected: ") && why.contains("X-Hub-Signature-256"),
        "{why}"
    );
    assert_eq!(outcome(&i, "web")["reason"], why);
}

#[tokio::test]
async fn a_refusal_for_another_reason_is_not_called_a_verification_failure() {
    let ferry = Ferry::shop().start().await;
    // Unsigned (let through by allow_unsigned), then refused for a modifier the app does not
    // take on hooks.
    let r = ferry.hook("shop").query("git_ref=main").send().await;
    assert_eq!(r.status, 400, "{}", r.text);
    let i = ferry.delivery(newest_rejected(&ferry).await).await;
    assert_eq!(i["request"]["refused_with"], 400);
    assert_eq!(i["request"]["path"], "/hooks/shop/••••?git_ref=main");
    let v = &i["verification"];
    assert!(v["failure"].is_null(), "{i:#}");
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("unverified: let through by verify.allow_unsigned"),
        "{v:#}"
    );
    let why = i["outcomes"]["why"].as_str().unwrap();
    assert_eq!(why, format!("rejected: {}", r.error()));
}

#[tokio::test]
async fn a_form_encoded_github_push_is_decoded_and_its_payload_pretty_printed() {
    let ferry = Ferry::shop().start().await;
    let commit = sha(5);
    let json = push_payload(REPO, "master", &commit, &commit_time(5));
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let id = ferry
        .hook("shop")
        .github("push")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    ferry.settle(id).await;
    let i = ferry.delivery(id).await;
    let body = &i["request"]["body"];
    assert_eq!(body["format"], "form", "{body:#}");
    assert_eq!(body["form"][0]["name"], "payload");
    assert_eq!(body["form"][0]["value"], json.as_str());
    assert!(
        body["form"][0]["json"]
            .as_str()
            .unwrap()
            .contains("\"ref\": \"refs/heads/master\""),
        "{body:#}"
    );
    assert!(body["pretty"].as_str().unwrap().starts_with("payload =\n{"));
    assert_eq!(
        i["parsed"]["event"]["changes"][0]["commit"],
        commit.as_str()
    );
    assert_eq!(outcome(&i, "web")["state"], "succeeded");
}

#[tokio::test]
async fn an_xml_body_on_a_plain_hook_is_indented_and_redeploys_unverified() {
    let ferry = Ferry::shop().start().await;
    let id = ferry
        .hook("shop")
        .header("Content-Type", "application/xml")
        .body("<build><status>passed</status><id>42</id></build>")
        .send()
        .await
        .accepted();
    ferry.settle(id).await;
    let i = ferry.delivery(id).await;
    let body = &i["request"]["body"];
    assert_eq!(body["format"], "xml", "{body:#}");
    assert_eq!(
        body["pretty"],
        "<build>\n  <status>passed</status>\n  <id>42</id>\n</build>"
    );
    let v = &i["verification"];
    assert_eq!(v["verified"], false);
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .contains("verify.allow_unsigned"),
        "{v:#}"
    );
    assert_eq!(i["parsed"]["event"]["kind"], "redeploy", "{i:#}");
    assert_eq!(i["parsed"]["event"]["unverified"], true);
    for service in ["web", "worker"] {
        assert_eq!(outcome(&i, service)["state"], "succeeded", "{i:#}");
    }
}

#[tokio::test]
async fn replays_and_manual_deploys_say_what_made_them() {
    let ferry = Ferry::shop().start().await;
    let id = ferry.push("master", &sha(6), &commit_time(6)).await;
    ferry.settle(id).await;

    let replay = ferry
        .post(
            &format!("/api/v1/deliveries/{id}/replay"),
            serde_json::json!({}),
        )
        .await
        .accepted();
    ferry.settle(replay).await;
    let i = ferry.delivery(replay).await;
    assert_eq!(i["request"]["method"], "replay", "{i:#}");
    assert_eq!(i["replay_of"], id);
    assert!(
        i["request"]["made_by"]
            .as_str()
            .unwrap()
            .contains(&format!("replay of delivery {id}")),
        "{i:#}"
    );
    // The same request again: the original's path and scheme.
    assert_eq!(i["request"]["path"], "/hooks/shop/••••");
    assert_eq!(i["verification"]["scheme"], "github");
    assert!(outcome(&i, "web")["deployment"].is_i64(), "{i:#}");

    // A manual deploy of one service: the other was not selected, and says so.
    let manual = ferry
        .post(
            "/api/v1/apps/shop/deploy",
            serde_json::json!({"services": ["worker"]}),
        )
        .await
        .accepted();
    ferry.settle(manual).await;
    let i = ferry.delivery(manual).await;
    assert_eq!(i["request"]["method"], "deploy");
    assert_eq!(
        i["request"]["path"],
        "/api/v1/apps/shop/deploy?services=worker"
    );
    assert_eq!(i["verification"]["scheme"], "admin_token");
    assert_eq!(outcome(&i, "worker")["state"], "succeeded");
    assert_eq!(
        outcome(&i, "web")["reason"],
        "not selected: ?services=worker"
    );
}

#[tokio::test]
async fn an_unknown_delivery_is_a_404() {
    let ferry = Ferry::shop().start().await;
    let r = ferry
        .api(
            reqwest::Method::GET,
            "/api/v1/deliveries/999",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "delivery not found");
}

#[tokio::test]
async fn ferry_deliveries_id_prints_the_inspection() {
    let ferry = Ferry::shop().start().await;
    let commit = sha(7);
    let id = ferry.push("master", &commit, &commit_time(7)).await;
    ferry.settle(id).await;
    let web = outcome(&ferry.delivery(id).await, "web")["deployment"].clone();
    let id_text = id.to_string();

    let out = ferry.cli(&["deliveries", &id_text]).run().await;
    let text = out.success();
    assert!(text.starts_with("delivery  "), "{text}");
    for line in [
        "app         shop".to_string(),
        "request     POST /hooks/shop/••••".to_string(),
        "verified    verified by github".to_string(),
        format!("parsed      push {REPO} refs/heads/master {commit}"),
        format!("  web      {web}"),
        "  content-type: application/json".to_string(),
        "Body (json, ".to_string(),
        "  \"ref\": \"refs/heads/master\",".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains(HOOK_TOKEN), "{text}");
    let (outcomes, headers, body) = (
        text.find("\nOutcomes\n").unwrap(),
        text.find("\nHeaders\n").unwrap(),
        text.find("\nBody (").unwrap(),
    );
    assert!(outcomes < headers && headers < body, "{text}");

    // --raw: the body exactly as received (one line of JSON).
    let raw = ferry.cli(&["deliveries", &id_text, "--raw"]).run().await;
    let stored = ferry.delivery(id).await["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        raw.success().ends_with(&format!("{stored}\n")),
        "{}",
        raw.stdout
    );

    // --json: the API's JSON.
    let json = ferry.cli(&["deliveries", &id_text, "--json"]).run().await;
    let v: Value = serde_json::from_str(json.success()).expect("JSON");
    assert_eq!(v["id"], id);
    assert_eq!(v["verification"]["scheme"], "github");

    // An app name still lists, and an unknown id fails with the server's reason.
    let list = ferry.cli(&["deliveries", "shop"]).run().await;
    assert!(list.success().starts_with("ID"), "{}", list.stdout);
    let missing = ferry.cli(&["deliveries", "999"]).run().await;
    assert!(
        missing.failure().contains("delivery not found"),
        "{missing:#?}"
    );
}
