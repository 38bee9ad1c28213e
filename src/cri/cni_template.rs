//! `cni_conf_template`: a CNI network config written from a template once
//! the kubelet hands the node's pod CIDR over (UpdateRuntimeConfig), as
//! containerd's CRI plugin does with its `conf_template`: only while the
//! CNI conf dir has no usable config, into `10-hull-net.conflist`.
//!
//! The template language is the part of Go's text/template that CNI config
//! templates use, over containerd's data: `.PodCIDR` (the first CIDR),
//! `.PodCIDRRanges` (all of them, in the kubelet's order) and `.Routes`
//! (`0.0.0.0/0` and/or `::/0`, one per address family present). Actions:
//! a value (`{{.PodCIDR}}`, `{{$v}}`, `{{.}}` in a range, `{{$.PodCIDR}}`;
//! a list prints as Go prints one, `[a b]`), `{{range .List}}`,
//! `{{range $v := .List}}`, `{{range $i, $v := .List}}` with an optional
//! `{{else}}` (an empty list), `{{if VALUE}}` (`{{else}}`), `{{end}}`,
//! comments `{{/* ... */}}`, and the trim markers `{{- ` and ` -}}`.
//! Anything else (functions, pipelines, `with`, other fields) is refused
//! with the action and its line, when the daemon starts.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The file the rendered config is written to (containerd's is
/// `10-containerd-net.conflist`).
pub const CONF_FILE: &str = "10-hull-net.conflist";
/// A template larger than this is refused.
const MAX_TEMPLATE: u64 = 1 << 20;
/// Nor may a rendered config grow beyond this (nested ranges multiply).
const MAX_OUTPUT: usize = 1 << 20;
/// How deeply `range` and `if` may nest.
const MAX_DEPTH: usize = 16;
/// At most this many CIDRs in a pod_cidr (the kubelet sends one per
/// address family).
pub const MAX_CIDRS: usize = 8;

/// What a template is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub pod_cidr: String,
    pub pod_cidr_ranges: Vec<String>,
    pub routes: Vec<String>,
}

impl Data {
    /// The data for the kubelet's `pod_cidr` ("10.244.1.0/24" or, dual
    /// stack, "10.244.1.0/24,fd00:1::/64"): each CIDR checked, the default
    /// routes of the families present.
    pub fn from_pod_cidr(text: &str) -> Result<Data, String> {
        let cidrs: Vec<String> = text.split(',').map(|c| c.trim().to_string()).collect();
        if cidrs.len() > MAX_CIDRS {
            return Err(format!("{} CIDRs; at most {MAX_CIDRS}", cidrs.len()));
        }
        let (mut v4, mut v6) = (false, false);
        for c in &cidrs {
            match parse_cidr(c) {
                Some(std::net::IpAddr::V4(_)) => v4 = true,
                Some(std::net::IpAddr::V6(_)) => v6 = true,
                None => return Err(format!("{c:?} is not a CIDR")),
            }
        }
        let routes = [(v4, "0.0.0.0/0"), (v6, "::/0")].iter().filter(|(on, _)| *on).map(|(_, r)| r.to_string()).collect();
        Ok(Data { pod_cidr: cidrs[0].clone(), pod_cidr_ranges: cidrs, routes })
    }
}

/// `ADDRESS/LENGTH`; the address it names.
fn parse_cidr(c: &str) -> Option<std::net::IpAddr> {
    let (addr, len) = c.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = len.parse().ok().filter(|_| len.bytes().all(|b| b.is_ascii_digit()))?;
    (len <= max).then_some(addr)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PodCidr,
    PodCidrRanges,
    Routes,
}

impl Field {
    fn named(name: &str) -> Option<Field> {
        match name {
            "PodCIDR" => Some(Field::PodCidr),
            "PodCIDRRanges" => Some(Field::PodCidrRanges),
            "Routes" => Some(Field::Routes),
            _ => None,
        }
    }
}

/// What a value is, known when the template is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The data itself (`.` outside a range, `$`).
    Root,
    Text,
    Number,
    List,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Field(Field),
    /// `.` inside a range: the element.
    Element,
    Root,
    /// A range variable, by its slot in the scope.
    Var(usize),
}

#[derive(Debug)]
enum Node {
    Text(String),
    Print(Value),
    Range { list: Field, index: Option<usize>, elem: Option<usize>, body: Vec<Node>, empty: Vec<Node> },
    If { cond: Value, then: Vec<Node>, otherwise: Vec<Node> },
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
}

/// One `{{ }}` or the text before it.
enum Token<'a> {
    Text(&'a str),
    /// The action's words, its line, and its whole text for errors.
    Action {
        body: &'a str,
        line: usize,
        raw: &'a str,
    },
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Cut the text into text and actions, applying the trim markers.
fn lex(src: &str) -> Result<Vec<Token<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            out.push(Token::Text(if trim_next { rest.trim_start_matches(is_space) } else { rest }));
            break;
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        let after = &rest[open + 2..];
        let line = 1 + src[..src.len() - rest.len() + open].matches('\n').count();
        // "{{- " trims the text before (Go wants the space: "{{-3}}" is a number).
        let trim_before = after.starts_with('-') && after[1..].starts_with(is_space);
        if trim_before {
            text = text.trim_end_matches(is_space);
        }
        out.push(Token::Text(text));
        let inner_start = open + if trim_before { 4 } else { 2 };
        let inner = &rest[inner_start..];
        // A comment may hold "}}"; it ends at "*/".
        let close = if inner.trim_start().starts_with("/*") {
            let start = inner.find("/*").unwrap_or(0);
            let end = inner[start..].find("*/").map(|i| start + i + 2);
            end.and_then(|e| inner[e..].find("}}").map(|c| e + c))
        } else {
            inner.find("}}")
        };
        let Some(close) = close else {
            return Err(format!("line {line}: unclosed action (no }} after {{{{)"));
        };
        let mut body = &inner[..close];
        // " -}}" trims the text after.
        trim_next = body.ends_with('-') && body[..body.len() - 1].ends_with(is_space);
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let raw_end = inner_start + close + 2;
        out.push(Token::Action { body: body.trim(), line, raw: &rest[open..raw_end] });
        rest = &rest[raw_end..];
    }
    Ok(out)
}

/// What the parser knows at a point of the template.
struct Scope {
    /// Variables in scope: name and kind, by slot (a slot is never reused).
    vars: Vec<(String, Kind)>,
    /// The slots visible here.
    visible: Vec<usize>,
    /// Inside a range, `.` is the element.
    in_range: bool,
}

const KNOWN: &str =
    "hull's CNI templates know .PodCIDR, .PodCIDRRanges, .Routes, ., $, $.FIELD, range variables, range, if, else, end and comments";

struct Parser<'a> {
    tokens: std::vec::IntoIter<Token<'a>>,
    scope: Scope,
}

/// How a list of nodes ended.
enum Close {
    Eof,
    End,
    Else,
}

impl<'a> Parser<'a> {
    fn unknown(raw: &str, line: usize) -> String {
        format!("line {line}: {raw}: unknown action ({KNOWN})")
    }

    fn value(&self, word: &str, raw: &str, line: usize) -> Result<(Value, Kind), String> {
        let field = |name: &str| match Field::named(name) {
            Some(f) => Ok((Value::Field(f), if f == Field::PodCidr { Kind::Text } else { Kind::List })),
            None => Err(format!("line {line}: {raw}: unknown field .{name} (the data has .PodCIDR, .PodCIDRRanges, .Routes)")),
        };
        if word == "." {
            return Ok(if self.scope.in_range { (Value::Element, Kind::Text) } else { (Value::Root, Kind::Root) });
        }
        if word == "$" {
            return Ok((Value::Root, Kind::Root));
        }
        if let Some(name) = word.strip_prefix("$.") {
            return field(name);
        }
        if let Some(name) = word.strip_prefix('.') {
            if self.scope.in_range {
                return Err(format!("line {line}: {raw}: inside a range . is the element, a string; use $.{name}"));
            }
            return field(name);
        }
        if word.starts_with('$') && word[1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let slot = self.scope.visible.iter().rev().find(|&&s| self.scope.vars[s].0 == word);
            return match slot {
                Some(&s) => Ok((Value::Var(s), self.scope.vars[s].1)),
                None => Err(format!("line {line}: {raw}: undefined variable {word}")),
            };
        }
        Err(Self::unknown(raw, line))
    }

    fn declare(&mut self, name: &str, kind: Kind, raw: &str, line: usize) -> Result<usize, String> {
        if name.len() < 2 || !name.starts_with('$') || !name[1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Self::unknown(raw, line));
        }
        self.scope.vars.push((name.to_string(), kind));
        let slot = self.scope.vars.len() - 1;
        self.scope.visible.push(slot);
        Ok(slot)
    }

    /// Nodes up to `{{end}}`, `{{else}}` or the end of the text.
    fn nodes(&mut self, depth: usize) -> Result<(Vec<Node>, Close, usize), String> {
        let mut out = Vec::new();
        while let Some(tok) = self.tokens.next() {
            let (body, line, raw) = match tok {
                Token::Text(t) => {
                    if !t.is_empty() {
                        out.push(Node::Text(t.to_string()));
                    }
                    continue;
                }
                Token::Action { body, line, raw } => (body, line, raw),
            };
            let words: Vec<&str> = body.split_whitespace().collect();
            match words.as_slice() {
                [c, ..] if c.starts_with("/*") => {
                    if !body.ends_with("*/") {
                        return Err(format!("line {line}: {raw}: a comment must end the action"));
                    }
                }
                ["end"] => return Ok((out, Close::End, line)),
                ["else"] => return Ok((out, Close::Else, line)),
                ["range", rest @ ..] => {
                    if depth >= MAX_DEPTH {
                        return Err(format!("line {line}: range and if nest more than {MAX_DEPTH} deep"));
                    }
                    out.push(self.range(rest, raw, line, depth)?);
                }
                ["if", cond] => {
                    if depth >= MAX_DEPTH {
                        return Err(format!("line {line}: range and if nest more than {MAX_DEPTH} deep"));
                    }
                    let (cond, _) = self.value(cond, raw, line)?;
                    let (then, end, _) = self.nodes(depth + 1)?;
                    let otherwise = self.tail(end, raw, line, depth)?;
                    out.push(Node::If { cond, then, otherwise });
                }
                [word] => {
                    let (v, kind) = self.value(word, raw, line)?;
                    if kind == Kind::Root {
                        return Err(format!("line {line}: {raw}: prints the whole data; name a field"));
                    }
                    out.push(Node::Print(v));
                }
                _ => return Err(Self::unknown(raw, line)),
            }
        }
        Ok((out, Close::Eof, 0))
    }

    /// After a block's body: the `{{else}}` part, up to its `{{end}}`.
    fn tail(&mut self, end: Close, raw: &str, line: usize, depth: usize) -> Result<Vec<Node>, String> {
        match end {
            Close::End => Ok(Vec::new()),
            Close::Eof => Err(format!("line {line}: {raw} has no {{{{end}}}}")),
            Close::Else => match self.nodes(depth + 1)? {
                (nodes, Close::End, _) => Ok(nodes),
                (_, Close::Else, l) => Err(format!("line {l}: a second {{{{else}}}} for {raw} (line {line})")),
                (_, Close::Eof, _) => Err(format!("line {line}: {raw} has no {{{{end}}}}")),
            },
        }
    }

    fn range(&mut self, words: &[&str], raw: &str, line: usize, depth: usize) -> Result<Node, String> {
        let (names, list): (Vec<&str>, &str) = match words {
            [list] => (vec![], list),
            [v, ":=", list] => (vec![v], list),
            [i, v, ":=", list] if i.ends_with(',') => (vec![&i[..i.len() - 1], v], list),
            [i, ",", v, ":=", list] => (vec![i, v], list),
            _ => return Err(Self::unknown(raw, line)),
        };
        let field = match self.value(list, raw, line)? {
            (Value::Field(f), Kind::List) => f,
            _ => return Err(format!("line {line}: {raw}: range needs a list (.PodCIDRRanges or .Routes)")),
        };
        let saved = (self.scope.visible.len(), self.scope.in_range);
        let (mut index, mut elem) = (None, None);
        match names.as_slice() {
            [v] => elem = Some(self.declare(v, Kind::Text, raw, line)?),
            [i, v] => {
                index = Some(self.declare(i, Kind::Number, raw, line)?);
                elem = Some(self.declare(v, Kind::Text, raw, line)?);
            }
            _ => {}
        }
        self.scope.in_range = true;
        let (body, end, _) = self.nodes(depth + 1)?;
        // The variables live in the body; an {{else}} sees the outer scope.
        self.scope.visible.truncate(saved.0);
        self.scope.in_range = saved.1;
        let empty = self.tail(end, raw, line, depth)?;
        Ok(Node::Range { list: field, index, elem, body, empty })
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let tokens = lex(text)?;
        let mut p = Parser { tokens: tokens.into_iter(), scope: Scope { vars: Vec::new(), visible: Vec::new(), in_range: false } };
        match p.nodes(0)? {
            (nodes, Close::Eof, _) => Ok(Template { nodes }),
            (_, Close::End, line) => Err(format!("line {line}: {{{{end}}}} without range or if")),
            (_, Close::Else, line) => Err(format!("line {line}: {{{{else}}}} without range or if")),
        }
    }

    /// Read and parse the template file.
    pub fn load(path: &Path) -> Result<Template, String> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = String::new();
        f.take(MAX_TEMPLATE + 1).read_to_string(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.len() as u64 > MAX_TEMPLATE {
            return Err(format!("{}: larger than {MAX_TEMPLATE} bytes", path.display()));
        }
        Template::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn render(&self, data: &Data) -> Result<String, String> {
        let mut out = String::new();
        let mut vars = Vec::new();
        render(&self.nodes, data, None, &mut vars, &mut out)?;
        Ok(out)
    }
}

/// A variable's value while rendering.
#[derive(Clone)]
enum Bound {
    Number(usize),
    Text(String),
}

fn list(data: &Data, f: Field) -> &[String] {
    match f {
        Field::PodCidr => std::slice::from_ref(&data.pod_cidr),
        Field::PodCidrRanges => &data.pod_cidr_ranges,
        Field::Routes => &data.routes,
    }
}

fn render(nodes: &[Node], data: &Data, dot: Option<&str>, vars: &mut Vec<Option<Bound>>, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Print(v) => match v {
                Value::Field(Field::PodCidr) => out.push_str(&data.pod_cidr),
                Value::Field(f) => {
                    let _ = write!(out, "[{}]", list(data, *f).join(" "));
                }
                Value::Element => out.push_str(dot.unwrap_or_default()),
                Value::Var(s) => match vars.get(*s).cloned().flatten() {
                    Some(Bound::Number(n)) => {
                        let _ = write!(out, "{n}");
                    }
                    Some(Bound::Text(t)) => out.push_str(&t),
                    None => {}
                },
                Value::Root => {}
            },
            Node::If { cond, then, otherwise } => {
                let truth = match cond {
                    Value::Field(Field::PodCidr) => !data.pod_cidr.is_empty(),
                    Value::Field(f) => !list(data, *f).is_empty(),
                    Value::Element => dot.is_some_and(|d| !d.is_empty()),
                    Value::Root => true,
                    Value::Var(s) => match vars.get(*s).cloned().flatten() {
                        Some(Bound::Number(n)) => n != 0,
                        Some(Bound::Text(t)) => !t.is_empty(),
                        None => false,
                    },
                };
                render(if truth { then } else { otherwise }, data, dot, vars, out)?;
            }
            Node::Range { list: f, index, elem, body, empty } => {
                let items = list(data, *f);
                if items.is_empty() {
                    render(empty, data, dot, vars, out)?;
                }
                for (i, item) in items.iter().enumerate() {
                    for (slot, v) in [(index, Bound::Number(i)), (elem, Bound::Text(item.clone()))] {
                        if let Some(s) = *slot {
                            if vars.len() <= s {
                                vars.resize(s + 1, None);
                            }
                            vars[s] = Some(v);
                        }
                    }
                    render(body, data, Some(item), vars, out)?;
                }
            }
        }
        if out.len() > MAX_OUTPUT {
            return Err(format!("the rendered config is larger than {MAX_OUTPUT} bytes"));
        }
    }
    Ok(())
}

/// What [`write_config`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The conf dir already has a usable config (named): left alone.
    Present(PathBuf),
    Written(PathBuf),
}

/// Render the template into the CNI conf dir, unless a CNI config is
/// found there already (then nothing is written, as containerd does). The
/// rendered text must be a CNI config hull can load; it is written to a
/// temp file, synced and renamed, so a reader never sees half of it.
pub fn write_config(opts: &crate::network::CniOptions, template: &Path, data: &Data) -> Result<Outcome, String> {
    if let Ok(c) = crate::network::CniConfig::discover(opts) {
        return Ok(Outcome::Present(c.source));
    }
    let text = Template::load(template)?.render(data).map_err(|e| format!("{}: {e}", template.display()))?;
    let path = opts.conf_dir.join(CONF_FILE);
    crate::network::config::parse_config(text.as_bytes(), &path)
        .map_err(|e| format!("{} rendered with {}: not a CNI config: {e}", template.display(), data.pod_cidr_ranges.join(",")))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&opts.conf_dir)
        .map_err(|e| format!("create {}: {e}", opts.conf_dir.display()))?;
    crate::runtime::record::write_bytes_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(Outcome::Written(path))
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd's documented template (docs/cni.md), in substance.
    const CONTAINERD_STYLE: &str = r#"{
  "name": "containerd-net",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "bridge",
      "ipam": {
        "type": "host-local",
        "ranges": [
          {{- range $i, $range := .PodCIDRRanges}}
          {{- if $i}}, {{end}}
          [{
            "subnet": "{{$range}}"
          }]
          {{- end}}
        ],
        "routes": [
          {{- range $i, $route := .Routes}}
          {{- if $i}}, {{end}}
          { "dst": "{{$route}}" }
          {{- end}}
        ]
      }
    }
  ]
}
"#;

    fn data(cidr: &str) -> Data {
        Data::from_pod_cidr(cidr).unwrap()
    }

    fn render(t: &str, cidr: &str) -> String {
        Template::parse(t).unwrap().render(&data(cidr)).unwrap()
    }

    #[test]
    fn pod_cidrs_and_routes() {
        let d = data("10.244.1.0/24");
        assert_eq!((d.pod_cidr.as_str(), d.routes.clone()), ("10.244.1.0/24", vec!["0.0.0.0/0".to_string()]));
        let d = data("10.244.1.0/24, fd00:1::/64");
        assert_eq!(d.pod_cidr_ranges, vec!["10.244.1.0/24", "fd00:1::/64"]);
        assert_eq!(d.routes, vec!["0.0.0.0/0", "::/0"]);
        assert_eq!(data("fd00::/8").routes, vec!["::/0"]);
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0.0/+8", "::/129", "10.0.0.0/8,", &["10.0.0.0/8"; 9].join(",")] {
            assert!(Data::from_pod_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_containerd_template_renders_a_cni_config() {
        let out = render(CONTAINERD_STYLE, "10.244.1.0/24,fd00:1::/64");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let ipam = &v["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(ipam["ranges"][1][0]["subnet"], "fd00:1::/64");
        assert_eq!(ipam["routes"][1]["dst"], "::/0");
        let out = render(CONTAINERD_STYLE, "10.9.0.0/16");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["plugins"][0]["ipam"]["ranges"].as_array().unwrap().len(), 1);
        assert_eq!(v["plugins"][0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
    }

    #[test]
    fn actions_as_go_renders_them() {
        assert_eq!(render("a {{.PodCIDR}} b", "10.0.0.0/8"), "a 10.0.0.0/8 b");
        assert_eq!(render("a \n {{- .PodCIDR -}} \n b", "10.0.0.0/8"), "a10.0.0.0/8b");
        assert_eq!(render("{{.PodCIDRRanges}} {{.Routes}}", "10.0.0.0/8,fd00::/8"), "[10.0.0.0/8 fd00::/8] [0.0.0.0/0 ::/0]");
        assert_eq!(
            render("{{range .Routes}}<{{.}}|{{$.PodCIDR}}>{{end}}", "10.0.0.0/8,fd00::/8"),
            "<0.0.0.0/0|10.0.0.0/8><::/0|10.0.0.0/8>"
        );
        assert_eq!(render("{{range $r := .Routes}}{{$r}};{{end}}", "fd00::/8"), "::/0;");
        assert_eq!(render("{{range $i, $c := .PodCIDRRanges}}{{$i}}={{$c}} {{end}}", "1.0.0.0/8,2.0.0.0/8"), "0=1.0.0.0/8 1=2.0.0.0/8 ");
        assert_eq!(render("{{if .PodCIDR}}yes{{else}}no{{end}}", "1.0.0.0/8"), "yes");
        assert_eq!(render("{{range $i, $c := .PodCIDRRanges}}{{if $i}}x{{else}}first{{end}}{{end}}", "1.0.0.0/8,2.0.0.0/8"), "firstx");
        assert_eq!(render("{{/* a comment with }} in it */}}x {{- /* trimmed */ -}} y", "1.0.0.0/8"), "xy");
        let empty = Data { pod_cidr: String::new(), pod_cidr_ranges: vec![], routes: vec![] };
        assert_eq!(Template::parse("{{range .Routes}}r{{else}}none{{end}}").unwrap().render(&empty).unwrap(), "none");
        // "{{-3}}" is not a trim marker in Go; here it is an unknown action.
        assert!(Template::parse("{{-3}}").is_err());
    }

    #[test]
    fn unknown_actions_are_refused_by_name_and_line() {
        for (t, needle) in [
            ("x\n{{index .PodCIDRRanges 0}}", "line 2: {{index .PodCIDRRanges 0}}: unknown action"),
            ("{{.PodCidr}}", "unknown field .PodCidr"),
            ("{{.PodCIDR | printf \"%s\"}}", "unknown action"),
            ("{{with .PodCIDR}}{{.}}{{end}}", "{{with .PodCIDR}}: unknown action"),
            ("{{$x := .PodCIDR}}", "unknown action"),
            ("{{range .PodCIDR}}{{end}}", "range needs a list"),
            ("{{range .Routes}}{{.PodCIDR}}{{end}}", "use $.PodCIDR"),
            ("{{range $r := .Routes}}{{end}}{{$r}}", "undefined variable $r"),
            ("{{$nope}}", "undefined variable $nope"),
            ("{{.}}", "name a field"),
            ("{{range .Routes}}", "has no {{end}}"),
            ("{{end}}", "{{end}} without range or if"),
            ("{{if .PodCIDR}}{{else}}{{else}}{{end}}", "a second {{else}}"),
            ("{{ .PodCIDR", "unclosed action"),
            ("{{/* open", "unclosed action"),
            ("{{define \"x\"}}{{end}}", "unknown action"),
            (&"{{if .PodCIDR}}".repeat(40), "nest more than"),
        ] {
            let e = Template::parse(t).unwrap_err();
            assert!(e.contains(needle), "{t}: {e}");
        }
    }

    #[test]
    fn output_is_bounded() {
        let t = format!("{}{}{}", "{{range $.PodCIDRRanges}}".repeat(14), "x".repeat(100), "{{end}}".repeat(14));
        let cidrs = ["10.0.0.0/8"; 8].join(",");
        let e = Template::parse(&t).unwrap().render(&data(&cidrs)).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn written_only_where_no_config_is() {
        let t = tempfile::tempdir().unwrap();
        let tpl = t.path().join("tpl");
        std::fs::write(&tpl, CONTAINERD_STYLE).unwrap();
        let opts = crate::network::CniOptions { conf_dir: t.path().join("net.d"), ..Default::default() };
        let path = opts.conf_dir.join(CONF_FILE);
        assert_eq!(write_config(&opts, &tpl, &data("10.1.0.0/16")).unwrap(), Outcome::Written(path.clone()));
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"subnet\": \"10.1.0.0/16\""));
        // Now a config is there: a second CIDR changes nothing.
        assert_eq!(write_config(&opts, &tpl, &data("10.2.0.0/16")).unwrap(), Outcome::Present(path.clone()));
        assert!(std::fs::read_to_string(&path).unwrap().contains("10.1.0.0/16"));
        // A template that renders no CNI config: an error, nothing written.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&tpl, "{\"subnet\": \"{{.PodCIDR}}\"").unwrap();
        let e = write_config(&opts, &tpl, &data("10.1.0.0/16")).unwrap_err();
        assert!(e.contains("not a CNI config"), "{e}");
        assert_eq!(std::fs::read_dir(&opts.conf_dir).unwrap().count(), 0, "nothing left in the conf dir");
    }
}
