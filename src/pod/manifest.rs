//! Kubernetes Pod manifests: read YAML or JSON, check every field against
//! what hull implements (an error for what would change behaviour, a
//! warning for what is harmless without a cluster), then parse into
//! k8s-openapi's Pod.
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::validate;
use crate::error::{Error, Result};

/// How hull treats a manifest field.
enum Field {
    /// Implemented; a leaf value.
    Leaf,
    /// Implemented; an object whose fields are checked in turn.
    Object(&'static [(&'static str, Field)]),
    /// Implemented; a list of such objects.
    List(&'static [(&'static str, Field)]),
    /// Harmless without a cluster: accepted with a warning.
    Ignored(&'static str),
    /// A map whose keys are free-form (labels, resource names).
    Map,
}

use Field::*;

const METADATA: &[(&str, Field)] = &[
    ("name", Leaf),
    ("namespace", Leaf),
    ("uid", Leaf),
    ("labels", Map),
    ("annotations", Map),
    ("generateName", Ignored("pods are named by metadata.name")),
    ("creationTimestamp", Ignored("set by the API server")),
    ("resourceVersion", Ignored("set by the API server")),
    ("ownerReferences", Ignored("there is no controller")),
    ("managedFields", Ignored("set by the API server")),
];

const PROBE: &[(&str, Field)] = &[
    ("exec", Object(&[("command", Leaf)])),
    (
        "httpGet",
        Object(&[
            ("path", Leaf),
            ("port", Leaf),
            ("host", Leaf),
            ("scheme", Leaf),
            ("httpHeaders", List(&[("name", Leaf), ("value", Leaf)])),
        ]),
    ),
    ("tcpSocket", Object(&[("port", Leaf), ("host", Leaf)])),
    ("initialDelaySeconds", Leaf),
    ("periodSeconds", Leaf),
    ("timeoutSeconds", Leaf),
    ("failureThreshold", Leaf),
    ("successThreshold", Leaf),
    ("terminationGracePeriodSeconds", Leaf),
];

const CONTAINER_SECURITY: &[(&str, Field)] = &[
    ("runAsUser", Leaf),
    ("runAsGroup", Leaf),
    ("runAsNonRoot", Leaf),
    ("readOnlyRootFilesystem", Leaf),
    ("privileged", Leaf),
    ("allowPrivilegeEscalation", Leaf),
    ("capabilities", Object(&[("add", Leaf), ("drop", Leaf)])),
];

const CONTAINER: &[(&str, Field)] = &[
    ("name", Leaf),
    ("image", Leaf),
    ("imagePullPolicy", Ignored("images come from hull's store or a local directory")),
    ("command", Leaf),
    ("args", Leaf),
    ("env", List(&[("name", Leaf), ("value", Leaf)])),
    ("workingDir", Leaf),
    ("ports", List(&[("containerPort", Leaf), ("hostPort", Leaf), ("protocol", Leaf), ("name", Leaf), ("hostIP", Leaf)])),
    ("resources", Object(&[("limits", Map), ("requests", Map)])),
    ("volumeMounts", List(&[("name", Leaf), ("mountPath", Leaf), ("readOnly", Leaf), ("subPath", Leaf), ("mountPropagation", Leaf)])),
    ("securityContext", Object(CONTAINER_SECURITY)),
    ("livenessProbe", Object(PROBE)),
    ("readinessProbe", Object(PROBE)),
    ("startupProbe", Object(PROBE)),
    ("stdin", Leaf),
    ("stdinOnce", Leaf),
    ("tty", Leaf),
    ("terminationMessagePath", Ignored("termination messages are not collected")),
    ("terminationMessagePolicy", Ignored("termination messages are not collected")),
];

const VOLUME: &[(&str, Field)] = &[
    ("name", Leaf),
    ("emptyDir", Object(&[("medium", Leaf), ("sizeLimit", Leaf)])),
    ("hostPath", Object(&[("path", Leaf), ("type", Leaf)])),
];

const POD_SECURITY: &[(&str, Field)] = &[
    ("runAsUser", Leaf),
    ("runAsGroup", Leaf),
    ("runAsNonRoot", Leaf),
    ("supplementalGroups", Leaf),
    ("sysctls", List(&[("name", Leaf), ("value", Leaf)])),
];

const SPEC: &[(&str, Field)] = &[
    ("containers", List(CONTAINER)),
    ("initContainers", List(CONTAINER)),
    ("volumes", List(VOLUME)),
    ("restartPolicy", Leaf),
    ("terminationGracePeriodSeconds", Leaf),
    ("hostname", Leaf),
    ("subdomain", Leaf),
    ("hostNetwork", Leaf),
    ("hostPID", Leaf),
    ("hostIPC", Leaf),
    ("shareProcessNamespace", Leaf),
    ("securityContext", Object(POD_SECURITY)),
    ("dnsPolicy", Leaf),
    ("dnsConfig", Object(&[("nameservers", Leaf), ("searches", Leaf), ("options", List(&[("name", Leaf), ("value", Leaf)]))])),
    ("hostAliases", List(&[("ip", Leaf), ("hostnames", Leaf)])),
    ("nodeName", Ignored("there is one node")),
    ("nodeSelector", Ignored("there is one node")),
    ("affinity", Ignored("there is one node")),
    ("tolerations", Ignored("there is one node")),
    ("schedulerName", Ignored("there is no scheduler")),
    ("priority", Ignored("there is no scheduler")),
    ("priorityClassName", Ignored("there is no scheduler")),
    ("serviceAccountName", Ignored("there is no API server to give tokens")),
    ("serviceAccount", Ignored("there is no API server to give tokens")),
    ("automountServiceAccountToken", Ignored("there is no API server to give tokens")),
    ("enableServiceLinks", Ignored("there are no services")),
];

const POD: &[(&str, Field)] = &[
    ("apiVersion", Leaf),
    ("kind", Leaf),
    ("metadata", Object(METADATA)),
    ("spec", Object(SPEC)),
    ("status", Ignored("status is hull's to report")),
];

/// A parsed manifest and the warnings its check produced.
#[derive(Debug)]
pub struct Manifest {
    pub pod: Pod,
    pub warnings: Vec<String>,
}

/// Parse YAML (or JSON, which is YAML) and check it.
pub fn parse(text: &str) -> Result<Manifest> {
    let value = validate::from_yaml(text)?;
    let mut warnings = Vec::new();
    check(&value, "", POD, &mut warnings)?;
    validate::no_nul(&value)?;
    if value.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err(Error::InvalidArgument("pod manifest: kind must be \"Pod\"".into()));
    }
    let pod: Pod = validate::to_pod(value)?;
    let name = pod.metadata.name.as_deref().unwrap_or("");
    crate::oci::state::validate_id(name)
        .map_err(|_| Error::InvalidArgument(format!("pod manifest: metadata.name {name:?} is not a valid name")))?;
    let spec = pod.spec.as_ref().ok_or_else(|| Error::InvalidArgument("pod manifest: spec is missing".into()))?;
    if spec.containers.is_empty() {
        return Err(Error::InvalidArgument("pod manifest: spec.containers must not be empty".into()));
    }
    validate::pod(&pod)?;
    Ok(Manifest { pod, warnings })
}

fn check(value: &Value, path: &str, schema: &[(&str, Field)], warnings: &mut Vec<String>) -> Result<()> {
    let Some(obj) = value.as_object() else {
        return Err(Error::InvalidArgument(format!("pod manifest: {} must be an object", display(path))));
    };
    for (key, v) in obj {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let Some((_, field)) = schema.iter().find(|(k, _)| k == key) else {
            return Err(Error::unsupported(format!("pod manifest field {here}"), "hull does not implement it"));
        };
        match field {
            Leaf | Map => {}
            Ignored(why) => warnings.push(format!("{here} is ignored: {why}")),
            Object(sub) => check(v, &here, sub, warnings)?,
            List(sub) => {
                let Some(items) = v.as_array() else {
                    return Err(Error::InvalidArgument(format!("pod manifest: {here} must be a list")));
                };
                for (i, item) in items.iter().enumerate() {
                    check(item, &format!("{here}[{i}]"), sub, warnings)?;
                }
            }
        }
    }
    Ok(())
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "the document"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_YAML: &str = "
apiVersion: v1
kind: Pod
metadata: {name: demo}
spec:
  nodeName: n1
  containers:
  - name: a
    image: /srv/rootfs
    command: [sh, -c, 'echo hi']
    resources: {limits: {cpu: 500m, memory: 128Mi}}
";

    #[test]
    fn parses_and_warns_about_harmless_fields() {
        let m = parse(POD_YAML).unwrap();
        assert_eq!(m.pod.metadata.name.as_deref(), Some("demo"));
        assert_eq!(m.warnings.len(), 1);
        assert!(m.warnings[0].contains("spec.nodeName"));
    }

    #[test]
    fn behaviour_changing_fields_are_errors_naming_the_field() {
        let yaml = POD_YAML.replace("    command:", "    lifecycle: {preStop: {exec: {command: [x]}}}\n    command:");
        let err = parse(&yaml).unwrap_err().to_string();
        assert!(err.contains("spec.containers[0].lifecycle"), "{err}");
        let yaml = POD_YAML.replace("spec:\n", "spec:\n  volumes: [{name: v, nfs: {server: x, path: /}}]\n");
        let err = parse(&yaml).unwrap_err().to_string();
        assert!(err.contains("spec.volumes[0].nfs"), "{err}");
    }
}
