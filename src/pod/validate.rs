//! Kubernetes' own validation rules for the Pod fields hull uses, applied
//! when a manifest is parsed, so that nothing out of range, out of an enum,
//! or able to inject lines into a generated file reaches a config: strings
//! without NUL bytes, DNS names as DNS-1123 names, IPs as addresses,
//! quantities non-negative and within int64, ports 1-65535, exact enum
//! values, no duplicate keys. Every error names the field.
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::backoff::RestartPolicy;
use crate::error::{Error, Result};

/// The longest grace period hull waits (a year): Kubernetes bounds it only
/// by int64 seconds, which no clock can add to the present.
pub const MAX_GRACE_SECONDS: i64 = 365 * 24 * 3600;

/// Linux's NGROUPS_MAX: setgroups(2) refuses more.
pub const MAX_GROUPS: usize = 65536;

fn bad(field: impl fmt::Display, why: impl fmt::Display) -> Error {
    Error::InvalidArgument(format!("pod manifest: {field}: {why}"))
}

/// Parse YAML (or JSON) into a JSON value, refusing duplicate keys (YAML
/// would keep the last one; Kubernetes' strict decoding refuses them).
pub fn from_yaml(text: &str) -> Result<Value> {
    let Strict(v) = serde_yaml_ng::from_str(text).map_err(|e| Error::InvalidArgument(format!("pod manifest: {e}")))?;
    Ok(v)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {v} is out of range")))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The manifest as k8s-openapi's Pod; a type error names the field's path
/// (`spec.containers[0].resources.limits.cpu`).
pub fn to_pod(value: Value) -> Result<Pod> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        bad(path, e.into_inner())
    })
}

/// NUL bytes cannot reach execve, sethostname or a file name intact:
/// refuse them wherever they are, naming the field.
pub fn no_nul(value: &Value) -> Result<()> {
    match crate::oci::config::find_nul(value, &[]) {
        Some(path) => Err(bad(path, "contains a NUL byte")),
        None => Ok(()),
    }
}

/// Every rule for the typed Pod.
pub fn pod(pod: &Pod) -> Result<()> {
    let Some(spec) = pod.spec.as_ref() else { return Ok(()) };
    spec_fields(spec)?;
    for (kind, list) in [("initContainers", spec.init_containers.as_deref().unwrap_or(&[])), ("containers", &spec.containers[..])] {
        for (i, c) in list.iter().enumerate() {
            container(c, &format!("spec.{kind}[{i}]"))?;
        }
    }
    pod_sums(spec)
}

fn spec_fields(spec: &PodSpec) -> Result<()> {
    if let Err(e) = RestartPolicy::from_pod_spec(spec.restart_policy.as_deref()) {
        return Err(bad("spec.restartPolicy", e));
    }
    if let Some(p) = spec.dns_policy.as_deref() {
        if !matches!(p, "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None") {
            return Err(bad("spec.dnsPolicy", format!("{p:?}: must be ClusterFirstWithHostNet, ClusterFirst, Default or None")));
        }
    }
    if let Some(g) = spec.termination_grace_period_seconds {
        grace("spec.terminationGracePeriodSeconds", g)?;
    }
    if let Some(h) = spec.hostname.as_deref() {
        dns_label("spec.hostname", h)?;
    }
    if let Some(h) = spec.subdomain.as_deref() {
        dns_label("spec.subdomain", h)?;
    }
    for (i, a) in spec.host_aliases.iter().flatten().enumerate() {
        ip(&format!("spec.hostAliases[{i}].ip"), &a.ip)?;
        for (j, h) in a.hostnames.iter().flatten().enumerate() {
            dns_subdomain(&format!("spec.hostAliases[{i}].hostnames[{j}]"), h)?;
        }
    }
    if let Some(dc) = &spec.dns_config {
        let ns = dc.nameservers.as_deref().unwrap_or(&[]);
        if ns.len() > 3 {
            return Err(bad("spec.dnsConfig.nameservers", "at most 3 nameservers"));
        }
        for (i, n) in ns.iter().enumerate() {
            ip(&format!("spec.dnsConfig.nameservers[{i}]"), n)?;
        }
        let searches = dc.searches.as_deref().unwrap_or(&[]);
        if searches.len() > 32 || searches.iter().map(|s| s.len() + 1).sum::<usize>() > 2048 {
            return Err(bad("spec.dnsConfig.searches", "at most 32 search domains and 2048 characters"));
        }
        for (i, s) in searches.iter().enumerate() {
            dns_subdomain(&format!("spec.dnsConfig.searches[{i}]"), s.strip_suffix('.').unwrap_or(s))?;
        }
        for (i, o) in dc.options.iter().flatten().enumerate() {
            let f = format!("spec.dnsConfig.options[{i}]");
            let name = o.name.as_deref().unwrap_or("");
            if name.is_empty() {
                return Err(bad(format!("{f}.name"), "must not be empty"));
            }
            token(&format!("{f}.name"), name)?;
            if let Some(v) = o.value.as_deref() {
                token(&format!("{f}.value"), v)?;
            }
        }
    }
    if let Some(sc) = &spec.security_context {
        id_range("spec.securityContext.runAsUser", sc.run_as_user)?;
        id_range("spec.securityContext.runAsGroup", sc.run_as_group)?;
        let groups = sc.supplemental_groups.as_deref().unwrap_or(&[]);
        if groups.len() > MAX_GROUPS {
            return Err(bad(
                "spec.securityContext.supplementalGroups",
                format!("{} groups: at most {MAX_GROUPS} (NGROUPS_MAX)", groups.len()),
            ));
        }
        for (i, g) in groups.iter().enumerate() {
            id_range(&format!("spec.securityContext.supplementalGroups[{i}]"), Some(*g))?;
        }
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if let Some(q) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            let f = format!("spec.volumes[{i}].emptyDir.sizeLimit");
            // A tmpfs of size 0 has no limit at all.
            if quantity(&f, q)? < 1.0 {
                return Err(bad(f, format!("{:?}: must be at least 1 byte", q.0)));
            }
        }
    }
    Ok(())
}

fn container(c: &Container, f: &str) -> Result<()> {
    for (i, e) in c.env.iter().flatten().enumerate() {
        let ok = !e.name.is_empty()
            && !e.name.starts_with(|ch: char| ch.is_ascii_digit())
            && e.name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'));
        if !ok {
            return Err(bad(format!("{f}.env[{i}].name"), format!("{:?}: a valid environment variable name must consist of letters, digits, '_', '-' or '.', and must not start with a digit", e.name)));
        }
    }
    for (i, p) in c.ports.iter().flatten().enumerate() {
        port(&format!("{f}.ports[{i}].containerPort"), p.container_port)?;
        if let Some(h) = p.host_port.filter(|h| *h != 0) {
            port(&format!("{f}.ports[{i}].hostPort"), h)?;
        }
        if let Some(pr) = p.protocol.as_deref() {
            if !matches!(pr, "TCP" | "UDP" | "SCTP") {
                return Err(bad(format!("{f}.ports[{i}].protocol"), format!("{pr:?}: must be TCP, UDP or SCTP")));
            }
        }
        if let Some(ip_s) = p.host_ip.as_deref().filter(|s| !s.is_empty()) {
            ip(&format!("{f}.ports[{i}].hostIP"), ip_s)?;
        }
    }
    if let Some(r) = &c.resources {
        let mut values: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for (which, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            for (k, q) in map.iter().flatten() {
                let v = quantity(&format!("{f}.resources.{which}.{k}"), q)?;
                if k == "cpu" && v * 1000.0 > i64::MAX as f64 {
                    return Err(bad(format!("{f}.resources.{which}.{k}"), format!("{:?} is out of range", q.0)));
                }
                values.insert((which, k), v);
            }
        }
        for ((which, k), v) in &values {
            if *which == "requests" && values.get(&("limits", k)).is_some_and(|l| v > l) {
                return Err(bad(format!("{f}.resources.requests.{k}"), "must be less than or equal to the limit"));
            }
        }
    }
    for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(bad(format!("{f}.volumeMounts[{i}].subPath"), format!("{sub:?}: must be a relative path without '..'")));
            }
        }
    }
    if let Some(sc) = &c.security_context {
        id_range(&format!("{f}.securityContext.runAsUser"), sc.run_as_user)?;
        id_range(&format!("{f}.securityContext.runAsGroup"), sc.run_as_group)?;
    }
    for (name, p) in [("livenessProbe", &c.liveness_probe), ("startupProbe", &c.startup_probe)] {
        if let Some(g) = p.as_ref().and_then(|p| p.termination_grace_period_seconds) {
            grace(&format!("{f}.{name}.terminationGracePeriodSeconds"), g)?;
        }
    }
    Ok(())
}

/// The pod's cgroup limits are sums of its containers': they must fit too.
fn pod_sums(spec: &PodSpec) -> Result<()> {
    for key in ["cpu", "memory"] {
        let mut sum: f64 = 0.0;
        for (i, c) in spec.containers.iter().enumerate() {
            let Some(q) = c.resources.as_ref().and_then(|r| r.limits.as_ref()).and_then(|l| l.get(key)) else { continue };
            sum += quantity(&format!("spec.containers[{i}].resources.limits.{key}"), q)?;
            let scale = if key == "cpu" { 1000.0 } else { 1.0 };
            if sum * scale > i64::MAX as f64 {
                return Err(bad(format!("spec.containers[{i}].resources.limits.{key}"), "the pod's total limit is out of range"));
            }
        }
    }
    Ok(())
}

fn quantity(f: &str, q: &Quantity) -> Result<f64> {
    parse_quantity(&q.0).map_err(|e| bad(f, e))
}

/// A Kubernetes quantity ("500m", "128Mi", "1e3") in base units (cores,
/// bytes): non-negative and within int64, as the API server requires.
pub fn parse_quantity(q: &str) -> std::result::Result<f64, String> {
    let bad_q = || format!("{q:?} is not a valid quantity");
    let body = q.strip_prefix('+').unwrap_or(q);
    if body.starts_with('-') {
        return Err(format!("{q:?} must be greater than or equal to 0"));
    }
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (num, suffix) = body.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(bad_q());
    }
    let n: f64 = num.parse().map_err(|_| bad_q())?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
                return Err(bad_q());
            }
            10f64.powi(exp.parse::<i32>().map_err(|_| bad_q())?)
        }
        _ => return Err(bad_q()),
    };
    let v = n * mult;
    if !v.is_finite() || v > i64::MAX as f64 {
        return Err(format!("{q:?} is out of range (at most {})", i64::MAX));
    }
    Ok(v)
}

fn grace(f: &str, secs: i64) -> Result<()> {
    if secs < 0 {
        return Err(bad(f, "must be greater than or equal to 0"));
    }
    if secs > MAX_GRACE_SECONDS {
        return Err(bad(f, format!("{secs}: at most {MAX_GRACE_SECONDS} seconds (a year)")));
    }
    Ok(())
}

/// A grace period from a pod, bounded (records made before validation
/// existed may hold anything).
pub fn grace_period(secs: Option<i64>) -> std::time::Duration {
    std::time::Duration::from_secs(secs.unwrap_or(30).clamp(0, MAX_GRACE_SECONDS) as u64)
}

fn port(f: &str, p: i32) -> Result<()> {
    if (1..=65535).contains(&p) {
        Ok(())
    } else {
        Err(bad(f, format!("{p}: must be between 1 and 65535, inclusive")))
    }
}

fn id_range(f: &str, id: Option<i64>) -> Result<()> {
    match id {
        Some(v) if !(0..=i64::from(i32::MAX)).contains(&v) => Err(bad(f, format!("{v}: must be between 0 and 2147483647, inclusive"))),
        _ => Ok(()),
    }
}

fn ip(f: &str, s: &str) -> Result<()> {
    s.parse::<IpAddr>().map(drop).map_err(|_| bad(f, format!("{s:?} is not a valid IP address")))
}

/// RFC 1123 label: lower-case letters, digits and '-', 1-63 characters,
/// starting and ending with a letter or digit.
fn dns_label(f: &str, s: &str) -> Result<()> {
    if is_label(s) {
        Ok(())
    } else {
        Err(bad(f, format!("{s:?}: a DNS-1123 label must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters")))
    }
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn dns_subdomain(f: &str, s: &str) -> Result<()> {
    if s.len() <= 253 && s.split('.').all(is_label) {
        Ok(())
    } else {
        Err(bad(f, format!("{s:?}: a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")))
    }
}

/// A resolv.conf option word: printable, no spaces (a newline would start
/// a new line of the file).
fn token(f: &str, s: &str) -> Result<()> {
    if s.chars().all(|c| c.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(bad(f, format!("{s:?} must be printable ASCII without spaces")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Pod> {
        super::super::manifest::parse(yaml).map(|m| m.pod)
    }

    const BASE: &str =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: /r\n    command: [sh]\n";

    fn with_spec(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    fn err(yaml: &str) -> String {
        match parse(yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn quantities_are_non_negative_and_within_int64() {
        assert_eq!(parse_quantity("500m"), Ok(0.5));
        assert_eq!(parse_quantity("128Mi"), Ok(134217728.0));
        assert_eq!(parse_quantity("1e3"), Ok(1000.0));
        assert_eq!(parse_quantity("1.5Gi"), Ok(1.5 * 1024.0 * 1024.0 * 1024.0));
        for bad in ["-500m", "1e400", "99999999999999999999999Ti", "12x", "", ".", "1..2", "1e", "Mi", "NaN", "inf", " 1", "0x10"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_quantity("-1Gi").unwrap_err().contains("greater than or equal to 0"));
    }

    #[test]
    fn resources_out_of_range_name_the_field() {
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    resources: {limits: {cpu: -500m}}"));
        assert!(e.contains("spec.containers[0].resources.limits.cpu"), "{e}");
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    resources: {limits: {memory: \"1e400\"}}"));
        assert!(e.contains("spec.containers[0].resources.limits.memory") && e.contains("out of range"), "{e}");
        let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: /r, command: [sh], resources: {limits: {memory: 9000000T}}}\n  - {name: b, image: /r, command: [sh], resources: {limits: {memory: 9000000T}}}\n";
        let e = err(two);
        assert!(e.contains("spec.containers[1].resources.limits.memory") && e.contains("total"), "{e}");
        let e = err(&with_spec("  volumes: [{name: v, emptyDir: {sizeLimit: -1Gi}}]\n"));
        assert!(e.contains("spec.volumes[0].emptyDir.sizeLimit"), "{e}");
        let e = err(&with_spec("  volumes: [{name: v, emptyDir: {sizeLimit: \"0\"}}]\n"));
        assert!(e.contains("sizeLimit"), "{e}");
    }

    #[test]
    fn type_errors_carry_the_field_path() {
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    resources: {limits: {cpu: [1]}}"));
        assert!(e.contains("spec.containers[0].resources.limits.cpu"), "{e}");
        let e = err(&with_spec("  terminationGracePeriodSeconds: abc\n"));
        assert!(e.contains("spec.terminationGracePeriodSeconds"), "{e}");
    }

    #[test]
    fn ports_enums_and_grace_are_checked() {
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    ports: [{containerPort: 70000}]"));
        assert!(e.contains("spec.containers[0].ports[0].containerPort") && e.contains("65535"), "{e}");
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    ports: [{containerPort: 80, hostPort: -1}]"));
        assert!(e.contains("hostPort"), "{e}");
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    ports: [{containerPort: 80, protocol: tcp}]"));
        assert!(e.contains("protocol"), "{e}");
        let e = err(&with_spec("  restartPolicy: Sometimes\n"));
        assert!(e.contains("spec.restartPolicy"), "{e}");
        let e = err(&with_spec("  dnsPolicy: clusterfirst\n"));
        assert!(e.contains("spec.dnsPolicy"), "{e}");
        let e = err(&with_spec("  terminationGracePeriodSeconds: 9223372036854775807\n"));
        assert!(e.contains("spec.terminationGracePeriodSeconds"), "{e}");
        let e = err(&with_spec("  terminationGracePeriodSeconds: -1\n"));
        assert!(e.contains("spec.terminationGracePeriodSeconds"), "{e}");
        parse(&with_spec("  restartPolicy: OnFailure\n  terminationGracePeriodSeconds: 0\n")).unwrap();
        assert_eq!(grace_period(Some(i64::MAX)).as_secs(), MAX_GRACE_SECONDS as u64);
        assert_eq!(grace_period(Some(-5)).as_secs(), 0);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = err(&with_spec("  restartPolicy: Never\n  restartPolicy: Always\n"));
        assert!(e.contains("duplicate key") && e.contains("restartPolicy"), "{e}");
    }

    #[test]
    fn nul_bytes_are_refused_naming_the_field() {
        let e = err(&BASE.replace("command: [sh]", "command: [echo, \"a\\0b\"]"));
        assert!(e.contains("spec.containers[0].command[1]") && e.contains("NUL"), "{e}");
        parse(&BASE.replace("command: [sh]", "command: [sh]\n    resources: {limits: {cpu: 1, memory: 128Mi}}")).unwrap();
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    env: [{name: A, value: \"x\\0y\"}]"));
        assert!(e.contains("spec.containers[0].env[0].value"), "{e}");
        let e = err(&with_spec("  hostname: \"a\\0b\"\n"));
        assert!(e.contains("spec.hostname"), "{e}");
    }

    #[test]
    fn names_and_addresses_cannot_inject_lines() {
        let e = err(&with_spec("  hostname: \"a\\nb\"\n"));
        assert!(e.contains("spec.hostname"), "{e}");
        let e = err(&with_spec("  hostAliases: [{ip: \"1.2.3.4\\n6.6.6.6 evil\", hostnames: [a]}]\n"));
        assert!(e.contains("spec.hostAliases[0].ip"), "{e}");
        let e = err(&with_spec("  hostAliases: [{ip: 1.2.3.4, hostnames: [\"a\\n6.6.6.6 evil\"]}]\n"));
        assert!(e.contains("spec.hostAliases[0].hostnames[0]"), "{e}");
        let e = err(&with_spec("  dnsConfig: {nameservers: [\"1.1.1.1\\nnameserver 6.6.6.6\"]}\n"));
        assert!(e.contains("spec.dnsConfig.nameservers[0]"), "{e}");
        let e = err(&with_spec("  dnsConfig: {searches: [\"a.com\\nnameserver 6.6.6.6\"]}\n"));
        assert!(e.contains("spec.dnsConfig.searches[0]"), "{e}");
        let e = err(&with_spec("  dnsConfig: {options: [{name: ndots, value: \"1\\nnameserver 6.6.6.6\"}]}\n"));
        assert!(e.contains("spec.dnsConfig.options[0].value"), "{e}");
        let e = err(&BASE.replace("command: [sh]", "command: [sh]\n    env: [{name: \"A=B\", value: x}]"));
        assert!(e.contains("spec.containers[0].env[0].name"), "{e}");
        parse(&with_spec("  hostname: web-1\n  hostAliases: [{ip: \"::1\", hostnames: [db.local]}]\n  dnsConfig: {nameservers: [10.0.0.1], searches: [svc.cluster.local.], options: [{name: ndots, value: \"2\"}]}\n")).unwrap();
    }

    #[test]
    fn supplemental_groups_are_bounded() {
        let groups: Vec<String> = (0..70_000).map(|g| g.to_string()).collect();
        let e = err(&with_spec(&format!("  securityContext: {{supplementalGroups: [{}]}}\n", groups.join(","))));
        assert!(e.contains("spec.securityContext.supplementalGroups") && e.contains("65536"), "{e}");
    }
}
