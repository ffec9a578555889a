//! The new container's settings: everything a user set on the old container, nothing that
//! came from the old *image* or names the old container.
//!
//! Copied: environment, binds, mounts and volumes (anonymous ones by name, so the data stays),
//! networks with their aliases, published ports, labels, restart policy, command, entrypoint,
//! user, resources, healthcheck. Left out: the old image's env, cmd, entrypoint, healthcheck,
//! labels, working dir, user (the new image supplies its own), the generated hostname and the
//! short-id network alias.

use std::collections::HashMap;

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig,
    ImageConfig, NetworkingConfig,
};

use super::short;

/// The networks a new container joins: the primary one at create (`EndpointsConfig`), the
/// others connected before it starts (the API takes only one at create time before v1.44).
type Networks = (
    HashMap<String, EndpointSettings>,
    Vec<(String, EndpointSettings)>,
);

/// The create request for the new container: the old one's settings, minus what came from the
/// old image or names the old container, on the new image. Returns it and the networks to
/// connect after creating.
pub(super) fn new_container(
    old: &ContainerInspectResponse,
    old_image: &ImageConfig,
    image: &str,
) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
    let config = old.config.clone().unwrap_or_default();
    let old_id = old.id.clone().unwrap_or_default();
    let mut host_config = old.host_config.clone().unwrap_or_default();
    host_config.binds = binds(old, &host_config);
    let (first, extra) = networks(old, &host_config, &old_id);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        volumes: None,
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(first),
        }),
        ..user_settings(&config, old_image, short(&old_id))
    };
    (body, extra)
}

/// The old container's own settings: values equal to the old image's defaults were not set by
/// the user, so they are left unset and the new image's own defaults apply.
fn user_settings(
    config: &ContainerConfig,
    old_image: &ImageConfig,
    short_id: &str,
) -> ContainerCreateBody {
    let unless_default = |value: Option<Vec<String>>, default: &Option<Vec<String>>| {
        value.filter(|v| Some(v) != default.as_ref())
    };
    let image_env: Vec<&String> = old_image.env.iter().flatten().collect();
    let env: Vec<String> = config
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !image_env.contains(&e))
        .collect();
    let labels: HashMap<String, String> = config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| old_image.labels.as_ref().and_then(|l| l.get(k)) != Some(v))
        .collect();
    let exposed_ports = config.exposed_ports.clone().map(|ports| {
        ports
            .into_iter()
            .filter(|p| !old_image.exposed_ports.iter().flatten().any(|x| x == p))
            .collect::<Vec<_>>()
    });
    ContainerCreateBody {
        // Docker sets the hostname to the short id unless the user gave one.
        hostname: config.hostname.clone().filter(|h| h != short_id),
        domainname: config.domainname.clone(),
        user: config
            .user
            .clone()
            .filter(|u| Some(u) != old_image.user.as_ref() && !u.is_empty()),
        exposed_ports,
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        env: Some(env),
        cmd: unless_default(config.cmd.clone(), &old_image.cmd),
        entrypoint: unless_default(config.entrypoint.clone(), &old_image.entrypoint),
        healthcheck: config
            .healthcheck
            .clone()
            .filter(|h| Some(h) != old_image.healthcheck.as_ref()),
        working_dir: config
            .working_dir
            .clone()
            .filter(|w| Some(w) != old_image.working_dir.as_ref() && !w.is_empty()),
        labels: Some(labels),
        stop_signal: config
            .stop_signal
            .clone()
            .filter(|s| Some(s) != old_image.stop_signal.as_ref()),
        stop_timeout: config.stop_timeout,
        ..Default::default()
    }
}

/// The old container's binds, plus its anonymous volumes (from the image's VOLUME), which
/// carry its data: mounted by name, so the new container sees the same data.
fn binds(old: &ContainerInspectResponse, host_config: &HostConfig) -> Option<Vec<String>> {
    let mut binds = host_config.binds.clone().unwrap_or_default();
    let named: Vec<String> = host_config
        .mounts
        .iter()
        .flatten()
        .filter_map(|m| m.target.clone())
        .collect();
    for m in old.mounts.iter().flatten() {
        let (Some(name), Some(dest)) = (&m.name, &m.destination) else {
            continue;
        };
        let is_volume = m.typ.as_deref() == Some("volume");
        let declared = binds
            .iter()
            .any(|b| b.split(':').nth(1) == Some(dest.as_str()))
            || named.contains(dest);
        if is_volume && !declared {
            binds.push(format!("{name}:{dest}"));
        }
    }
    (!binds.is_empty()).then_some(binds)
}

/// The old container's networks. Aliases keep what the user gave, without the old container's
/// short id (Docker adds the new one's).
fn networks(old: &ContainerInspectResponse, host_config: &HostConfig, old_id: &str) -> Networks {
    let short_id = short(old_id);
    let networks = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let endpoint = |settings: &EndpointSettings| EndpointSettings {
        aliases: settings.aliases.clone().map(|a| {
            a.into_iter()
                .filter(|x| x != short_id && x != old_id)
                .collect()
        }),
        links: settings.links.clone(),
        driver_opts: settings.driver_opts.clone(),
        // A fixed address (set by the user) moves with the container; a dynamic one does not.
        ipam_config: settings.ipam_config.clone(),
        ..Default::default()
    };
    let primary = host_config.network_mode.clone().unwrap_or_default();
    let mut first = HashMap::new();
    let mut extra = Vec::new();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    for net in names {
        let settings = endpoint(&networks[net]);
        if *net == primary || (primary == "default" && net == "bridge") {
            first.insert(net.clone(), settings);
        } else {
            extra.push((net.clone(), settings));
        }
    }
    (first, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_defaults_are_not_copied_but_user_settings_are() {
        let old_image = ImageConfig {
            env: Some(vec!["PATH=/bin".into(), "VERSION=1.0.0".into()]),
            cmd: Some(vec!["serve".into()]),
            labels: Some(HashMap::from([("org.version".into(), "1.0.0".into())])),
            ..Default::default()
        };
        let old = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            config: Some(bollard::models::ContainerConfig {
                hostname: Some("0123456789ab".into()),
                env: Some(vec![
                    "PATH=/bin".into(),
                    "VERSION=1.0.0".into(),
                    "GREETING=hello".into(),
                ]),
                cmd: Some(vec!["serve".into()]),
                labels: Some(HashMap::from([
                    ("org.version".into(), "1.0.0".into()),
                    ("ferry.service".into(), "api".into()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (body, extra) = new_container(&old, &old_image, "r/x@sha256:1");
        assert_eq!(body.env, Some(vec!["GREETING=hello".to_string()]));
        assert_eq!(body.cmd, None, "the new image's own CMD applies");
        assert_eq!(
            body.hostname, None,
            "the generated hostname names the old container"
        );
        assert_eq!(
            body.labels,
            Some(HashMap::from([(
                "ferry.service".to_string(),
                "api".to_string()
            )]))
        );
        assert_eq!(body.image.as_deref(), Some("r/x@sha256:1"));
        assert!(extra.is_empty());
    }
}
