//! Git pushes: whether a push deploys a git service, and to which ref and commit. A service
//! follows one repository (matched without regard to case) and a branch or a tag pattern; of
//! several changes in one push it takes the newest it follows. A deleted ref deploys nothing,
//! and `?git_ref=` (on a redeploy-style sender) turns a push in the repository into a trigger
//! of the URL's ref.

use crate::config::GitSpec;
use crate::sources::{GitPush, GitRef};
use crate::store::NewDeployment;

use super::Modifiers;

/// Fills in the ref and commit a push deploys to a service, or skips it with the reason.
/// Returns whether the push was forced (then it is never stale).
pub(super) fn plan_push(
    d: &mut NewDeployment,
    git: Option<&GitSpec>,
    changes: &[GitPush],
    m: &Modifiers,
) -> bool {
    let name = d.service.clone();
    let repo = changes.first().map(|c| c.repo.as_str()).unwrap_or("?");
    let Some(g) = git else {
        d.skip(format!(
            "push to {repo}: service {name} does not follow a git repository"
        ));
        return false;
    };
    let in_repo: Vec<&GitPush> = changes.iter().filter(|c| g.follows_repo(&c.repo)).collect();
    if g.any_repo() {
        // `repo = "*"`: the repository is the pushed one.
        d.git_repo = in_repo.first().map(|c| c.repo.clone());
    }
    // The change this service follows; the newest if several match.
    let followed = in_repo
        .iter()
        .filter(|c| m.git_ref.is_some() || follows(g, &c.git_ref))
        .max_by_key(|c| c.time);
    match (in_repo.first(), followed) {
        (None, _) => {
            d.skip(format!("push to {repo}; service {name} follows {}", g.repo));
        }
        (_, Some(c)) if c.deleted => {
            d.skip(format!("{} was deleted; nothing to deploy", c.full_ref));
        }
        (_, Some(_)) if m.git_ref.is_some() => {
            // The URL names the ref to deploy; the push only triggers it.
        }
        (_, Some(c)) => {
            d.git_ref = Some(c.full_ref.clone());
            d.git_branch = match &c.git_ref {
                GitRef::Branch(b) => Some(b.clone()),
                _ => None,
            };
            d.git_commit = c.commit.clone();
            d.event_time = c.time;
            return c.forced;
        }
        (Some(_), None) => {
            let what: Vec<String> = in_repo.iter().map(|c| describe(c)).collect();
            d.skip(format!(
                "{}; service {name} follows {}",
                what.join(", "),
                g.follows()
            ));
        }
    }
    false
}

/// Whether a service's git policy follows a pushed ref.
fn follows(g: &GitSpec, r: &GitRef) -> bool {
    match r {
        GitRef::Branch(b) => g.branch.as_deref() == Some(b.as_str()),
        GitRef::Tag(t) => g.tags.as_ref().is_some_and(|p| p.matches(t)),
        GitRef::Other(_) => false,
    }
}

fn describe(c: &GitPush) -> String {
    let what = match &c.git_ref {
        GitRef::Branch(b) => format!("push to branch {b}"),
        GitRef::Tag(t) => format!("push of tag {t}"),
        GitRef::Other(r) => format!("push to {r}"),
    };
    if c.deleted {
        format!("{what} (deleted)")
    } else {
        what
    }
}
