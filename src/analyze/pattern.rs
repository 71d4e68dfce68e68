//! Patterns users type to pick methods: globs (`*`, `?`) matched against a method's
//! full path, `package.Service/Method`, `Service/Method` and short name.

/// `*` and `?` globbing on bytes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Does a method path (`/etcdserverpb.KV/Put`) match a method pattern?
pub fn method_matches(pattern: &str, path: &str) -> bool {
    let tail = path.trim_start_matches('/');
    let short = path.rsplit('/').next().unwrap_or(path);
    let service_method = tail
        .split_once('/')
        .map(|(svc, m)| format!("{}/{m}", svc.rsplit('.').next().unwrap_or(svc)))
        .unwrap_or_default();
    [path, tail, short, service_method.as_str()]
        .iter()
        .any(|form| glob_match(pattern, form))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_patterns() {
        let p = "/etcdserverpb.KV/Put";
        for pat in [
            "/etcdserverpb.KV/Put",
            "etcdserverpb.KV/Put",
            "KV/Put",
            "Put",
            "*",
            "*Put",
            "KV/*",
        ] {
            assert!(method_matches(pat, p), "{pat}");
        }
        assert!(!method_matches("Range", p));
    }

    #[test]
    fn globs() {
        assert!(glob_match("Put", "Put"));
        assert!(glob_match("*Lease*", "/etcdserverpb.Lease/LeaseGrant"));
        assert!(glob_match("Lease???nt", "LeaseGrant"));
        assert!(!glob_match("Put", "PutX"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
