//! Device access rules (linux.resources.devices) and the devices every
//! container may use, as runc allows them.
use oci_spec::runtime::LinuxDeviceCgroup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// 'a', 'b' or 'c'.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl Rule {
    pub fn from_spec(d: &LinuxDeviceCgroup) -> Rule {
        Rule {
            allow: d.allow(),
            kind: d.typ().map(|t| t.as_str().chars().next().unwrap_or('a')).unwrap_or('a'),
            major: d.major().filter(|m| *m >= 0),
            minor: d.minor().filter(|m| *m >= 0),
            access: d.access().clone().filter(|a| !a.is_empty()).unwrap_or_else(|| "rwm".into()),
        }
    }

    fn allow(kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> Rule {
        Rule { allow: true, kind, major, minor, access: access.into() }
    }

    /// The line written to devices.allow / devices.deny.
    pub fn v1_line(&self) -> String {
        if self.kind == 'a' {
            return "a".into();
        }
        let num = |n: Option<i64>| n.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, num(self.major), num(self.minor), self.access)
    }
}

/// Devices a container may always use: mknod of anything, the standard
/// character devices, ptys and tun (runc's default allow list).
pub fn default_allowed() -> Vec<Rule> {
    vec![
        Rule::allow('c', None, None, "m"),
        Rule::allow('b', None, None, "m"),
        Rule::allow('c', Some(1), Some(3), "rwm"),
        Rule::allow('c', Some(1), Some(8), "rwm"),
        Rule::allow('c', Some(1), Some(7), "rwm"),
        Rule::allow('c', Some(5), Some(0), "rwm"),
        Rule::allow('c', Some(1), Some(5), "rwm"),
        Rule::allow('c', Some(1), Some(9), "rwm"),
        Rule::allow('c', Some(136), None, "rwm"),
        Rule::allow('c', Some(5), Some(2), "rwm"),
        Rule::allow('c', Some(10), Some(200), "rwm"),
    ]
}

/// An allow rule for a device the config creates (linux.devices).
pub fn allow_device(kind: char, major: i64, minor: i64) -> Rule {
    Rule::allow(kind, Some(major), Some(minor), "rwm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        assert_eq!(Rule::allow('c', Some(1), Some(3), "rwm").v1_line(), "c 1:3 rwm");
        assert_eq!(Rule::allow('c', Some(136), None, "rwm").v1_line(), "c 136:* rwm");
        let deny_all = Rule { allow: false, kind: 'a', major: None, minor: None, access: "rwm".into() };
        assert_eq!(deny_all.v1_line(), "a");
    }
}
