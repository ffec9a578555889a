//! Bitbucket Cloud build statuses: `POST
//! {api_url}/2.0/repositories/{workspace}/{repo_slug}/commit/{sha}/statuses/build` with
//! `Authorization: Bearer TOKEN` (a repository or workspace access token with the
//! `repository:write` scope). The body is JSON: `key` (what identifies the status: posting the
//! same key again updates it), `state`, `name`, `url` (required: the deployment's page),
//! `description`.
//!
//! `key` may hold 40 characters; the context `ferry/APP/SERVICE` is used as it is when it
//! fits, else shortened the same way every time ([`key`]), and `name` always shows it whole.
//!
//! Only Bitbucket Cloud: Bitbucket Data Center (`repo:refs_changed` pushes) has its own
//! build-status API (`/rest/build-status/1.0/…`), not this one, so its pushes get no status;
//! Cloud and Data Center deliveries are told apart by the delivery's event key. What is
//! shared with the other hosts is `statuses.rs`.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::statuses::{self, Host};
use super::target::{Context, Outcome, Subject};
use crate::store::{NewNotification, Notification, StoreError};

/// `key`'s limit.
const KEY_MAX: usize = 40;
/// The event key of a Bitbucket Cloud push (Data Center's is `repo:refs_changed`).
const CLOUD_PUSH: &str = "repo:push";

/// The status of one event, if it gets one (a Cloud push's deployment; the repository must
/// be `WORKSPACE/REPO`).
pub(crate) async fn fan_out(
    ctx: &Context,
    s: &Subject<'_>,
) -> Result<Option<NewNotification>, StoreError> {
    let Some(st) = statuses::status(ctx, s, Host::Bitbucket) else {
        return Ok(None);
    };
    let d = st.deployment;
    let event = match s.delivery.filter(|x| x.id == d.delivery_id) {
        Some(delivery) => delivery.event.clone(),
        None => ctx
            .store
            .deliveries_by_id(&[d.delivery_id])
            .await?
            .remove(&d.delivery_id)
            .and_then(|x| x.event),
    };
    if event.as_deref() != Some(CLOUD_PUSH) {
        return Ok(None);
    }
    let [workspace, repo] = st.repo[..] else {
        statuses::unusable(d, Host::Bitbucket, "its repository is not WORKSPACE/REPO");
        return Ok(None);
    };
    let path = format!(
        "2.0/repositories/{}/{}/commit/{}/statuses/build",
        statuses::encode(workspace),
        statuses::encode(repo),
        statuses::encode(st.commit)
    );
    let body = json!({
        "key": key(&st.context),
        "state": Host::Bitbucket.state(st.state),
        "name": st.context,
        "url": st.target_url,
        "description": st.description,
    });
    Ok(statuses::notification(ctx, s, Host::Bitbucket, path, &body))
}

/// `context` as a `key`: itself if it has at most [`KEY_MAX`] bytes (so characters too), else
/// its first 31 bytes (cut on a character boundary), `-` and 8 hex digits of its SHA-256: one
/// context always gets the same key, and two long ones that share a start different keys.
pub(crate) fn key(context: &str) -> String {
    if context.len() <= KEY_MAX {
        return context.to_string();
    }
    let mut end = KEY_MAX - 9;
    while !context.is_char_boundary(end) {
        end -= 1;
    }
    let digest = hex::encode(Sha256::digest(context.as_bytes()));
    format!("{}-{}", &context[..end], &digest[..8])
}

/// One try.
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    statuses::send(ctx, n, Host::Bitbucket, |token| {
        (http::header::AUTHORIZATION, format!("Bearer {token}"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_in_40_characters_the_same_way_every_time() {
        assert_eq!(key("ferry/shop/web"), "ferry/shop/web");
        let exact = format!("ferry/shop/{}", "w".repeat(29));
        assert_eq!(exact.len(), 40);
        assert_eq!(key(&exact), exact);
        let long = "ferry/shop/storefront-web-frontend-europe-west";
        let k = key(long);
        assert_eq!(k.chars().count(), 40);
        assert_eq!(k, key(long), "deterministic");
        assert!(k.starts_with("ferry/shop/storefront-web-front-"), "{k}");
        let other = key("ferry/shop/storefront-web-frontend-europe-east");
        assert_ne!(k, other, "a shared start still gives two keys");
        let wide = format!("ferry/shop/{}", "é".repeat(40));
        let k = key(&wide);
        assert!(k.chars().count() <= 40 && k.len() <= 40, "{k}");
    }
}
