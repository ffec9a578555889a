//! Fuzzes the value checks (`ferry::sources::values`): they never panic, never accept a value
//! holding a control character, a leading `-` or `..`, and an event that passes them yields
//! only clean `FERRY_*` values. Times from the future never survive `clamp_future_times`.
#![no_main]

use ferry::fuzzing::values::{
    FUTURE_TOLERANCE_MS, check_event, clamp_future_times, commit_id, env_value,
    git_ref_or_commit, ref_name, repository,
};
use ferry::fuzzing::{Event, GitPush, GitRef};
use libfuzzer_sys::fuzz_target;

fn clean(v: &str) -> bool {
    !v.chars().any(char::is_control) && !v.starts_with('-')
}

fuzz_target!(|input: (&str, &str, &str, i64, i64)| {
    let (a, b, c, time, received) = input;
    for s in [a, b, c] {
        if ref_name(s).is_ok() {
            assert!(clean(s) && !s.contains("..") && !s.is_empty(), "{s:?}");
        }
        if git_ref_or_commit(s).is_ok() {
            assert!(clean(s) && !s.contains(".."), "{s:?}");
        }
        if repository(s).is_ok() {
            assert!(clean(s), "{s:?}");
        }
        if let Ok(id) = commit_id(s) {
            assert!(id.len() == 40 || id.len() == 64);
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }
    let mut event = Event::Push(vec![GitPush {
        repo: a.to_string(),
        full_ref: b.to_string(),
        git_ref: GitRef::parse(b),
        commit: Some(c.to_string()),
        time: Some(time),
        deleted: false,
        forced: false,
    }]);
    if check_event(&mut event).is_ok() {
        let Event::Push(changes) = &event else {
            unreachable!()
        };
        for p in changes {
            let short = match &p.git_ref {
                GitRef::Branch(x) | GitRef::Tag(x) => Some(x.as_str()),
                GitRef::Other(_) => None,
            };
            for v in [Some(p.repo.as_str()), Some(p.full_ref.as_str()), short, p.commit.as_deref()]
                .into_iter()
                .flatten()
            {
                assert!(env_value("FERRY_X", v).is_ok() && clean(v), "{v:?}");
            }
        }
    }
    let note = clamp_future_times(&mut event, received);
    if let Event::Push(changes) = &event {
        for p in changes {
            let t = p.time.unwrap_or(i64::MIN);
            assert!(t <= received.saturating_add(FUTURE_TOLERANCE_MS));
            assert_eq!(note.is_some(), t != time);
        }
    }
});
