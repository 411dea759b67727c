//! The request to trace: `--to HOST[:PORT][/PATH]`, `-H 'name: value'`, `--method`, `--sni`.

use std::net::IpAddr;

use serde::Serialize;

/// Errors in the request flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `--to` does not parse.
    #[error("invalid --to {value:?}: {reason} (expected HOST[:PORT][/PATH], e.g. reviews.default:9080/api)")]
    To {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `-H` does not parse.
    #[error("invalid -H {value:?}: expected 'name: value'")]
    Header {
        /// The value as given.
        value: String,
    },
    /// `--inbound` does not parse.
    #[error("invalid --inbound {value:?}: {reason} (expected PORT[/PATH], e.g. 8080/api)")]
    Inbound {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--method` is not a token.
    #[error("invalid --method {value:?}: expected an HTTP method such as GET")]
    Method {
        /// The value as given.
        value: String,
    },
}

/// One request, as the application would send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// The host as given (a Service name, a host name or an IP).
    pub host: String,
    /// The destination IP, when the host is one (or once resolved).
    pub ip: Option<IpAddr>,
    /// The destination port (80 when not given).
    pub port: u16,
    /// `:path`, query included (default `/`).
    pub path: String,
    /// `:method` (default `GET`).
    pub method: String,
    /// `:authority`: `HOST[:PORT]` as curl sends it (no port for 80), unless `-H host:` overrides it.
    pub authority: String,
    /// Other headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The TLS server name, for TLS-originating clients (`--sni`).
    pub sni: Option<String>,
}

impl Request {
    /// Builds an inbound request (`--inbound PORT[/PATH]`): the authority is `localhost:PORT`
    /// unless `-H host:` sets it.
    pub fn inbound(
        spec: &str,
        headers: &[String],
        method: Option<&str>,
        sni: Option<&str>,
    ) -> Result<Request, RequestError> {
        let port_text = spec.split('/').next().unwrap_or_default();
        match port_text.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return Err(RequestError::Inbound {
                    value: spec.to_string(),
                    reason: format!("{port_text:?} is not a port"),
                });
            }
        }
        Request::parse(&format!("localhost:{spec}"), headers, method, sni)
    }

    /// Builds the request from the flags.
    pub fn parse(
        to: &str,
        headers: &[String],
        method: Option<&str>,
        sni: Option<&str>,
    ) -> Result<Request, RequestError> {
        let bad = |reason: &str| RequestError::To { value: to.to_string(), reason: reason.to_string() };
        let rest = to.strip_prefix("http://").unwrap_or(to);
        if rest.contains("://") {
            return Err(bad("only plain host names are accepted, no scheme other than http://"));
        }
        let (hostport, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            let (h, after) = inner.split_once(']').ok_or_else(|| bad("unclosed [ in IPv6 address"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad("unexpected text after ]")),
            }
        } else if hostport.matches(':').count() > 1 {
            (hostport, None)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*')) {
            return Err(bad(&format!("{host:?} is not a host name or IP")));
        }
        let port: u16 = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad(&format!("{p:?} is not a port (1-65535)"))),
            },
        };
        let ip: Option<IpAddr> = host.parse().ok();
        let host_part = if ip.is_some_and(|i| i.is_ipv6()) { format!("[{host}]") } else { host.to_string() };
        let mut authority = if port == 80 { host_part } else { format!("{host_part}:{port}") };
        let method = method.unwrap_or("GET").to_string();
        if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(RequestError::Method { value: method });
        }
        let mut parsed = Vec::new();
        for h in headers {
            let (name, value) = h
                .strip_prefix(':')
                .map_or(h.split_once(':'), |rest| rest.split_once(':').map(|(n, v)| (&h[..n.len() + 1], v)))
                .ok_or_else(|| RequestError::Header { value: h.clone() })?;
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(RequestError::Header { value: h.clone() });
            }
            let value = value.trim().to_string();
            if name == "host" || name == ":authority" {
                authority = value;
            } else {
                parsed.push((name, value));
            }
        }
        Ok(Request {
            host: host.to_string(),
            ip,
            port,
            path,
            method: method.to_ascii_uppercase(),
            authority,
            headers: parsed,
            sni: sni.map(str::to_string),
        })
    }

    /// A header as route matching sees it: pseudo-headers included, repeated headers joined with `,`.
    pub fn header(&self, name: &str) -> Option<String> {
        match name {
            ":authority" | "host" => Some(self.authority.clone()),
            ":method" => Some(self.method.clone()),
            ":path" => Some(self.path.clone()),
            ":scheme" => Some("http".to_string()),
            _ => {
                let values: Vec<&str> =
                    self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
                if values.is_empty() { None } else { Some(values.join(",")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_path() {
        let r = Request::parse("bar-service.bar-namespace:50002/", &[], None, None).unwrap();
        assert_eq!((r.host.as_str(), r.port, r.path.as_str()), ("bar-service.bar-namespace", 50002, "/"));
        assert_eq!(r.authority, "bar-service.bar-namespace:50002");
        let r =
            Request::parse("reviews", &["X-User: alice".into(), "host: other:1".into()], Some("post"), None).unwrap();
        assert_eq!((r.port, r.path.as_str(), r.method.as_str(), r.authority.as_str()), (80, "/", "POST", "other:1"));
        assert_eq!(r.header("x-user").as_deref(), Some("alice"));
        let r = Request::parse("10.0.0.1:9080/a?b=1", &[":authority: x".into()], None, None).unwrap();
        assert_eq!(r.ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!((r.path.as_str(), r.authority.as_str()), ("/a?b=1", "x"));
        let r = Request::parse("[::1]:8080", &[], None, None).unwrap();
        assert_eq!((r.host.as_str(), r.authority.as_str()), ("::1", "[::1]:8080"));
    }

    #[test]
    fn bad_input_names_the_value() {
        for (to, want) in [
            ("", "the host is empty"),
            (":80", "the host is empty"),
            ("a:0", "\"0\" is not a port"),
            ("a:x/", "\"x\" is not a port"),
            ("https://a", "no scheme"),
            ("a b", "is not a host name"),
        ] {
            let err = Request::parse(to, &[], None, None).unwrap_err().to_string();
            assert!(err.contains(want), "{to:?}: {err}");
        }
        let err = Request::parse("a", &["novalue".into()], None, None).unwrap_err().to_string();
        assert!(err.contains("\"novalue\""), "{err}");
        let err = Request::parse("a", &[], Some("G E T"), None).unwrap_err().to_string();
        assert!(err.contains("--method"), "{err}");
    }
}
