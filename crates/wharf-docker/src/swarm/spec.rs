//! An [`InstanceSpec`] as a Swarm service: labels, environment, the app port published in host
//! mode on an engine-chosen node port, tasks spread over nodes, the app's node-local volume,
//! limits, and the apps' overlay network with the app's name as alias.

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountType,
    MountVolumeOptions, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use wharf_runtime::{CONTAINER_VOLUME, DEFAULT_CONTAINER_PORT, InstanceSpec, Workload};

use crate::labels;

/// The attachable overlay network every wharf service joins; apps reach each other there by
/// their app name.
pub(crate) const SWARM_NETWORK: &str = "wharf-swarm";

/// The node-local volume holding an app's data (`/data` in its tasks).
pub(crate) fn volume_name(app: &str) -> String {
    format!("wharf-{app}")
}

/// The port the app listens on inside its tasks.
pub(crate) fn app_port(spec: &InstanceSpec) -> u16 {
    spec.port.unwrap_or(DEFAULT_CONTAINER_PORT)
}

/// The labels of the service and of its containers.
pub(crate) fn labels(spec: &InstanceSpec) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (labels::APP.to_string(), spec.app.clone()),
        (labels::INSTANCE.to_string(), spec.instance.clone()),
        (labels::FINGERPRINT.to_string(), spec.fingerprint.clone()),
        (labels::PORT.to_string(), app_port(spec).to_string()),
    ]);
    if let Some(r) = spec.release {
        l.insert(labels::RELEASE.to_string(), r.to_string());
    }
    l
}

/// The app's variables plus what the runtime promises every app (`PORT`, `HOST`,
/// `WHARF_VOLUME`, `DATA_DIR`); the runtime's own win over the app's of the same name.
pub(crate) fn env(spec: &InstanceSpec) -> Vec<String> {
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "PORT" | "HOST" | "WHARF_VOLUME" | "DATA_DIR"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("PORT".into(), app_port(spec).to_string()));
    env.push(("HOST".into(), "0.0.0.0".into()));
    env.push(("WHARF_VOLUME".into(), CONTAINER_VOLUME.into()));
    env.push(("DATA_DIR".into(), CONTAINER_VOLUME.into()));
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The service for `spec`; `None` when its workload is not an image.
pub(crate) fn service_spec(spec: &InstanceSpec) -> Option<ServiceSpec> {
    let Workload::Image { image, command } = &spec.workload else {
        return None;
    };
    let labels = labels(spec);
    let mut mounts = vec![Mount {
        target: Some(CONTAINER_VOLUME.into()),
        source: Some(volume_name(&spec.app)),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(HashMap::from([
                (labels::MANAGED.to_string(), "true".to_string()),
                (labels::APP.to_string(), spec.app.clone()),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if spec.container.read_only {
        mounts.push(Mount {
            target: Some("/tmp".into()),
            typ: Some(MountType::TMPFS),
            tmpfs_options: Some(MountTmpfsOptions {
                mode: Some(0o1777),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let container = TaskSpecContainerSpec {
        image: Some(image.clone()),
        labels: Some(labels.clone()),
        command: command
            .as_ref()
            .map(|c| vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()]),
        env: Some(env(spec)),
        mounts: Some(mounts),
        read_only: spec.container.read_only.then_some(true),
        stop_grace_period: Some(nanos(spec.stop_grace)),
        ..Default::default()
    };
    let limits = Limit {
        memory_bytes: spec
            .limits
            .memory_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        nano_cpus: spec.limits.cpu_millis.map(|m| i64::from(m) * 1_000_000),
        pids: None,
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(limits),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            delay: Some(nanos(spec.restart.backoff_initial)),
            max_attempts: Some(i64::from(spec.restart.max_restarts)),
            window: Some(nanos(spec.restart.stable_after)),
        }),
        placement: Some(TaskSpecPlacement {
            preferences: Some(vec![TaskSpecPlacementPreferences {
                spread: Some(TaskSpecPlacementSpread {
                    spread_descriptor: Some("node.id".into()),
                }),
            }]),
            // The user's own rules (`--constraint node.labels.zone==a`), e.g. Director's
            // sites pinned to the nodes that hold their data.
            constraints: (!spec.container.constraints.is_empty())
                .then(|| spec.container.constraints.clone()),
            ..Default::default()
        }),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(SWARM_NETWORK.into()),
            aliases: Some(vec![spec.app.clone()]),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Some(ServiceSpec {
        name: Some(spec.instance.clone()),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(spec.replicas.max(1))),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            // DNS round robin: the alias resolves to the tasks themselves, no virtual IP (the
            // IPVS balancer behind one is not needed, and host-mode ports do not use it).
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(app_port(spec))),
                // 0 in host mode: each task gets a free port of its node, so several tasks of
                // one service (or of two releases during a deploy) can share a node.
                published_port: Some(0),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    })
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use wharf_runtime::{ContainerOptions, Isolation, Limits, RestartPolicy};

    fn spec() -> InstanceSpec {
        InstanceSpec {
            app: "blog".into(),
            instance: "blog-1a2b".into(),
            release: Some(3),
            fingerprint: "fp".into(),
            workload: Workload::Image {
                image: "reg:5000/wharf/blog:3".into(),
                command: Some("exec python3 app.py".into()),
            },
            env: BTreeMap::from([("A".into(), "1".into()), ("PORT".into(), "1".into())]),
            port: None,
            replicas: 2,
            volume: "/nowhere".into(),
            log_dir: "/nowhere".into(),
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpu_millis: Some(500),
            },
            restart: RestartPolicy::default(),
            stop_grace: Duration::from_secs(3),
            isolation: Isolation::default(),
            container: ContainerOptions {
                read_only: true,
                constraints: vec!["node.labels.zone==a".into()],
            },
        }
    }

    #[test]
    fn the_service_carries_what_the_spec_asks() {
        let s = service_spec(&spec()).unwrap();
        assert_eq!(s.name.as_deref(), Some("blog-1a2b"));
        let l = s.labels.as_ref().unwrap();
        assert_eq!(l[labels::APP], "blog");
        assert_eq!(l[labels::RELEASE], "3");
        assert_eq!(l[labels::PORT], "8000");
        let t = s.task_template.unwrap();
        let c = t.container_spec.unwrap();
        assert_eq!(c.labels.as_ref().unwrap()[labels::INSTANCE], "blog-1a2b");
        let env = c.env.unwrap();
        assert!(env.contains(&"A=1".to_string()));
        assert!(env.contains(&"PORT=8000".to_string()), "{env:?}");
        assert!(!env.contains(&"PORT=1".to_string()), "{env:?}");
        assert!(env.contains(&"DATA_DIR=/data".to_string()));
        assert_eq!(c.read_only, Some(true));
        let mounts = c.mounts.unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("wharf-blog"));
        assert_eq!(mounts[1].target.as_deref(), Some("/tmp"));
        assert_eq!(c.stop_grace_period, Some(3_000_000_000));
        let lim = t.resources.unwrap().limits.unwrap();
        assert_eq!(lim.nano_cpus, Some(500_000_000));
        let ports = s.endpoint_spec.unwrap().ports.unwrap();
        assert_eq!(ports[0].target_port, Some(8000));
        assert_eq!(
            ports[0].publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        let net = &t.networks.unwrap()[0];
        assert_eq!(net.aliases.as_deref(), Some(&["blog".to_string()][..]));
        let placement = t.placement.unwrap();
        assert_eq!(
            placement.constraints,
            Some(vec!["node.labels.zone==a".to_string()])
        );
    }

    #[test]
    fn a_process_workload_is_not_a_service() {
        let mut s = spec();
        s.workload = Workload::Process {
            command: "x".into(),
            workdir: "/".into(),
        };
        assert!(service_spec(&s).is_none());
    }
}
