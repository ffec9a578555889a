//! Planning: which services an event deploys, to which version, and what is skipped and why.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn a_push_to_another_branch_is_skipped_with_the_branch_as_reason() {
    let ferry = Ferry::shop().start().await;
    let id = ferry
        .push("feature/new-checkout", &sha(1), &commit_time(1))
        .await;
    let deployments = ferry.settle(id).await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "skipped", "{web:#}");
    let reason = web["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("feature/new-checkout"),
        "the reason names the pushed branch: {reason:?}"
    );
    not_deployed(&deployments, "worker");
    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
}

#[tokio::test]
async fn repositories_match_case_insensitively_and_others_are_skipped() {
    let ferry = Ferry::shop().start().await;

    let other = ferry
        .signed_push(&push_value(
            "someone-else/Hello-World",
            "master",
            &sha(1),
            &commit_time(1),
        ))
        .await;
    let deployments = ferry.settle(other).await;
    assert_eq!(only(&deployments, "web")["state"], "skipped");
    assert!(
        only(&deployments, "web")["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    let same = ferry
        .signed_push(&push_value(
            "codertocat/hello-world",
            "master",
            &sha(2),
            &commit_time(2),
        ))
        .await;
    let deployments = ferry.settle(same).await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["commit"], sha(2).as_str());

    ferry.settled("shop").await;
    let runs = ferry.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].commit.as_deref(), Some(sha(2).as_str()));
}

#[tokio::test]
async fn deleting_a_branch_or_a_tag_deploys_nothing() {
    let ferry = Ferry::shop().start().await;

    let mut deletion = push_value(REPO, "master", &"0".repeat(40), &commit_time(1));
    deletion["before"] = json!(sha(1));
    deletion["deleted"] = json!(true);
    deletion["commits"] = json!([]);
    deletion["head_commit"] = Value::Null;
    let branch = ferry.signed_push(&deletion).await;
    let deployments = ferry.settle(branch).await;
    not_deployed(&deployments, "web");
    not_deployed(&deployments, "worker");

    let (_, deployments) = ferry
        .hook("shop")
        .fixture("push-tag-deleted")
        .deliver()
        .await;
    not_deployed(&deployments, "web");
    not_deployed(&deployments, "worker");

    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
}

/// For an annotated tag GitHub's `after` is the tag object, not a commit: the commit to deploy
/// is `head_commit.id`.
#[tokio::test]
async fn the_commit_comes_from_head_commit_not_after() {
    let ferry = Ferry::shop().start().await;
    let commit = sha(42);
    let tag_object = "7a9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b";
    let mut push = push_value(REPO, "master", &commit, &commit_time(42));
    push["after"] = json!(tag_object);
    let id = ferry.signed_push(&push).await;

    let deployments = ferry.settle(id).await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["commit"], commit.as_str());
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(env.get("FERRY_GIT_COMMIT"), Some(&commit));
}

#[tokio::test]
async fn an_event_older_than_the_deployed_one_is_skipped_as_stale() {
    let ferry = Ferry::shop().start().await;

    // 09:00Z, written with an offset.
    let first = ferry
        .push("master", &sha(1), "2026-11-20T11:00:00+02:00")
        .await;
    assert_eq!(
        only(&ferry.settle(first).await, "web")["state"],
        "succeeded"
    );

    // 10:00Z is newer, although "10:00Z" sorts before "11:00+02:00" as text.
    let newer = ferry.push("master", &sha(2), "2026-11-20T10:00:00Z").await;
    let web = only(&ferry.settle(newer).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");

    // 08:30Z is older than what runs now.
    let older = ferry
        .push("master", &sha(3), "2026-11-20T09:30:00+01:00")
        .await;
    let web = only(&ferry.settle(older).await, "web").clone();
    assert_eq!(web["state"], "skipped", "{web:#}");
    let reason = web["reason"].as_str().expect("a reason");
    assert!(reason.contains("stale"), "{reason:?}");

    ferry.settled("shop").await;
    let commits: Vec<Option<String>> = ferry.runs().into_iter().map(|r| r.commit).collect();
    assert_eq!(commits, vec![Some(sha(1)), Some(sha(2))]);
}

#[tokio::test]
async fn an_event_older_than_the_queued_one_is_skipped_as_stale() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("web");

    let first = ferry.push("master", &sha(1), &commit_time(10)).await;
    let first_dep = ferry.planned_deployment(first, "web").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(first_dep, "running").await;

    let newest = ferry.push("master", &sha(3), &commit_time(30)).await;
    let newest_dep = ferry.planned_deployment(newest, "web").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(ferry.deployment(newest_dep).await["state"], "queued");

    let late = ferry.push("master", &sha(2), &commit_time(20)).await;
    let late_web = only(&ferry.settle(late).await, "web").clone();
    assert_eq!(late_web["state"], "skipped", "{late_web:#}");
    assert!(
        late_web["reason"]
            .as_str()
            .is_some_and(|r| r.contains("stale")),
        "{late_web:#}"
    );

    ferry.release("web");
    assert_eq!(
        ferry.wait_state(newest_dep, "succeeded").await["commit"],
        sha(3).as_str()
    );
    assert_eq!(ferry.deployment(first_dep).await["state"], "succeeded");
    ferry.settled("shop").await;
    let commits: Vec<Option<String>> = ferry.runs().into_iter().map(|r| r.commit).collect();
    assert_eq!(commits, vec![Some(sha(1)), Some(sha(3))]);
}

#[tokio::test]
async fn git_ref_deploys_that_ref_to_git_services() {
    let ferry = Ferry::with_config(&shop_ci()).start().await;
    let (_, deployments) = ferry
        .hook("shop")
        .query("services=web&git_ref=v2.3.4")
        .ci_bearer()
        .deliver()
        .await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["git_ref"], "v2.3.4");
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(env.get("FERRY_GIT_REF").map(String::as_str), Some("v2.3.4"));
    not_deployed(&deployments, "worker");
}

#[tokio::test]
async fn services_selects_what_is_deployed() {
    let ferry = Ferry::shop().start().await;

    let (_, deployments) = ferry.hook("shop").query("services=worker").deliver().await;
    assert_eq!(only(&deployments, "worker")["state"], "succeeded");
    not_deployed(&deployments, "web");

    let (_, deployments) = ferry
        .hook("shop")
        .query("services=web,worker")
        .deliver()
        .await;
    assert_eq!(only(&deployments, "worker")["state"], "succeeded");
    assert_eq!(only(&deployments, "web")["state"], "succeeded");

    ferry.settled("shop").await;
    assert_eq!(ferry.runs_of("web").len(), 1, "{:?}", ferry.runs());
    assert_eq!(ferry.runs_of("worker").len(), 2, "{:?}", ferry.runs());
}

#[tokio::test]
async fn deployment_profile_selects_services_with_spaces_as_plus_or_percent_20() {
    let ferry = Ferry::shop().start().await;

    for query in [
        "deployment_profile=front+end",
        "deployment_profile=front%20end",
    ] {
        let id = ferry.hook("shop").query(query).send().await.accepted();
        let deployments = ferry.settle(id).await;
        let worker = only(&deployments, "worker");
        assert_eq!(worker["state"], "succeeded", "{query}: {worker:#}");
        not_deployed(&deployments, "web");
        let env = ferry.run_env(worker["id"].as_i64().unwrap());
        assert_eq!(
            env.get("FERRY_PROFILE").map(String::as_str),
            Some("front end"),
            "{query}"
        );
    }

    let (_, deployments) = ferry
        .hook("shop")
        .query("deployment_profile=hotfix")
        .deliver()
        .await;
    assert_eq!(only(&deployments, "web")["state"], "succeeded");
    not_deployed(&deployments, "worker");

    ferry.settled("shop").await;
    assert_eq!(ferry.runs_of("worker").len(), 2, "{:?}", ferry.runs());
    assert_eq!(ferry.runs_of("web").len(), 1, "{:?}", ferry.runs());
}

#[tokio::test]
async fn github_events_other_than_push_deploy_nothing() {
    let ferry = Ferry::shop().start().await;

    let deployment = ferry
        .hook("shop")
        .fixture("deployment-created")
        .send()
        .await;
    assert!(
        (200..300).contains(&deployment.status),
        "an ignored event is still accepted: {}",
        deployment.text
    );
    let issue = json!({
        "action": "opened",
        "issue": {"number": 1, "title": "Spelling error in the README file"},
        "repository": {"name": "Hello-World", "full_name": REPO, "owner": {"login": "Codertocat"}},
        "sender": {"login": "Codertocat"},
    });
    let issues = ferry
        .hook("shop")
        .github("issues")
        .body(issue.to_string())
        .signed(GITHUB_SECRET)
        .send()
        .await;
    assert!((200..300).contains(&issues.status), "{}", issues.text);

    for reply in [&deployment, &issues] {
        let d = ferry.wait_planned(reply.delivery_id()).await;
        assert_eq!(d["source"], "github");
        assert_eq!(d["verified"], true);
    }
    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
    for d in ferry.deployments("app=shop").await {
        assert_eq!(d["state"], "skipped", "{d:#}");
    }
}
