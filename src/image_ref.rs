//! Image references as Docker reads them: the repository of a reference, its registry host,
//! and the canonical name two spellings of one repository share. Pure functions in the bottom
//! layer, so `config` (validation), `sources` (payloads), `plan` (matching pushes) and the
//! docker executor (registry credentials) read references alike.

/// The names Docker Hub's registry goes by besides `docker.io` (in payloads, in image
/// references and as keys of `~/.docker/config.json`'s `auths`).
pub(crate) const DOCKER_HUB_ALIASES: &[&str] = &[
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The repository of an image reference: `host/ns/name:tag`, `host/ns/name@sha256:…` and
/// `host:5000/ns/name` all give the part before the tag or digest (a trailing `:` as in GitHub's
/// `package_url` is dropped too; a `scheme://` prefix is removed). `None` when nothing usable
/// is left (empty, or whitespace or control characters inside).
pub(crate) fn image_repository(reference: &str) -> Option<String> {
    let r = reference.trim();
    let r = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r);
    let r = r.split_once('@').map_or(r, |(name, _)| name);
    // A `:` after the last `/` starts the tag; one before it belongs to a host:port.
    let r = match r.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => r,
    };
    let r = r.trim_end_matches('/');
    (!r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then(|| r.to_string())
}

/// A repository name as Docker resolves it, for comparing a pushed repository with a
/// configured one: lower case, Docker Hub's implicit `docker.io/` and `library/` made explicit.
pub(crate) fn canonical_repository(repository: &str) -> String {
    let r = image_repository(repository)
        .unwrap_or_else(|| repository.to_string())
        .to_ascii_lowercase();
    let (host, path) = match r.split_once('/') {
        Some((h, p)) if h.contains(['.', ':']) || h == "localhost" => {
            (h.to_string(), p.to_string())
        }
        _ => ("docker.io".to_string(), r.clone()),
    };
    let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    };
    if host == "docker.io" && !path.contains('/') {
        return format!("docker.io/library/{path}");
    }
    format!("{host}/{path}")
}

/// The registry host of a repository (`docker.io` when it names none).
pub(crate) fn registry_host(repository: &str) -> String {
    match repository.split_once('/') {
        Some((h, _)) if h.contains(['.', ':']) || h == "localhost" => h.to_string(),
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repositories() {
        assert_eq!(
            image_repository("localhost/harbor/alpine@sha256:954b").as_deref(),
            Some("localhost/harbor/alpine")
        );
        assert_eq!(
            image_repository("reg.local:5000/a/b:v1").as_deref(),
            Some("reg.local:5000/a/b")
        );
        assert_eq!(
            image_repository("reg.local:5000/a/b").as_deref(),
            Some("reg.local:5000/a/b")
        );
        assert_eq!(
            image_repository("ghcr.io/o/n:").as_deref(),
            Some("ghcr.io/o/n")
        );
        assert_eq!(
            image_repository("https://quay.io/a/b").as_deref(),
            Some("quay.io/a/b")
        );
        assert_eq!(image_repository(" "), None);
        assert_eq!(image_repository("a b/c"), None);
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("127.0.0.1:5000/acme/api"), "127.0.0.1:5000");
        assert_eq!(registry_host("ghcr.io/acme/api"), "ghcr.io");
        assert_eq!(registry_host("acme/api"), "docker.io");
        assert_eq!(registry_host("nginx"), "docker.io");
        assert_eq!(registry_host("localhost/x"), "localhost");
    }

    #[test]
    fn docker_hub_spellings_share_one_canonical_name() {
        for alias in ["docker.io"].iter().chain(DOCKER_HUB_ALIASES) {
            assert_eq!(
                canonical_repository(&format!("{alias}/acme/api")),
                "docker.io/acme/api"
            );
            assert_eq!(
                canonical_repository(&format!("{alias}/nginx:1")),
                "docker.io/library/nginx"
            );
        }
        assert_eq!(canonical_repository("Acme/API"), "docker.io/acme/api");
        assert_eq!(canonical_repository("ghcr.io/o/n"), "ghcr.io/o/n");
    }
}
