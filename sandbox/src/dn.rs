//! Distinguished names for `tls_client_auth`: parse an RFC 4514 string, read a certificate's
//! subject, and compare the two order-insensitively (attribute types case-insensitive and
//! aliased, values exact after trimming). Pure; no I/O.

use x509_parser::x509::X509Name;

/// One attribute of a DN: normalised type (`CN`, `O`, …) and value.
pub type Attribute = (String, String);

/// Parses an RFC 4514 DN string (`C=GB,O=Org,OU=x,CN=y`, `\`-escapes, `+` multi-valued RDNs).
/// Returns `None` for a malformed string.
pub fn parse_rfc4514(input: &str) -> Option<Vec<Attribute>> {
    let mut attrs = Vec::new();
    let mut current = String::new();
    let mut chars = input.chars().peekable();
    let mut parts: Vec<String> = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next()?;
                if next.is_ascii_hexdigit() && chars.peek().is_some_and(char::is_ascii_hexdigit) {
                    let low = chars.next()?;
                    let byte = u8::from_str_radix(&format!("{next}{low}"), 16).ok()?;
                    current.push(char::from(byte));
                } else {
                    current.push(next);
                }
            }
            ',' | '+' | ';' => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    for part in parts {
        if part.trim().is_empty() {
            return None;
        }
        let (ty, value) = part.split_once('=')?;
        attrs.push(normalise(ty, value));
    }
    Some(attrs)
}

/// Reads the subject of a parsed certificate as normalised attributes.
pub fn from_x509_name(name: &X509Name<'_>) -> Vec<Attribute> {
    let registry = x509_parser::objects::oid_registry();
    name.iter_attributes()
        .map(|attr| {
            let oid = attr.attr_type();
            let ty = x509_parser::objects::oid2abbrev(oid, registry)
                .map(str::to_string)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = attr.as_str().map(str::to_string).unwrap_or_default();
            normalise(&ty, &value)
        })
        .collect()
}

/// True when both DNs hold the same attributes, in any order.
pub fn same_dn(a: &[Attribute], b: &[Attribute]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    !a.is_empty() && a == b
}

/// Renders attributes as an RFC 4514-style string (for logs and admin views).
pub fn render(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .map(|(t, v)| format!("{t}={}", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn normalise(ty: &str, value: &str) -> Attribute {
    let ty = ty.trim().to_ascii_uppercase();
    let ty = match ty.as_str() {
        "2.5.4.3" | "COMMONNAME" => "CN",
        "2.5.4.6" | "COUNTRYNAME" => "C",
        "2.5.4.10" | "ORGANIZATIONNAME" => "O",
        "2.5.4.11" | "ORGANIZATIONALUNITNAME" => "OU",
        "2.5.4.7" | "LOCALITYNAME" => "L",
        "2.5.4.8" | "STATEORPROVINCENAME" => "ST",
        "2.5.4.5" => "SERIALNUMBER",
        "0.9.2342.19200300.100.1.25" | "DOMAINCOMPONENT" => "DC",
        "0.9.2342.19200300.100.1.1" | "USERID" => "UID",
        "1.2.840.113549.1.9.1" | "EMAIL" | "E" => "EMAILADDRESS",
        other => other,
    }
    .to_string();
    (ty, value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_comparison_ignores_attribute_order_and_type_case() {
        let a = parse_rfc4514("C=GB,O=OpenBanking,OU=0015800001041RHAAY,CN=5aRav7KBdrEqqs1e1fwNgk");
        let b =
            parse_rfc4514("cn=5aRav7KBdrEqqs1e1fwNgk, ou=0015800001041RHAAY, o=OpenBanking, c=GB");
        assert!(same_dn(&a.unwrap_or_default(), &b.unwrap_or_default()));
    }

    #[test]
    fn dn_comparison_notices_a_different_value() {
        let a = parse_rfc4514("O=Org,CN=a").unwrap_or_default();
        let b = parse_rfc4514("O=Org,CN=b").unwrap_or_default();
        assert!(!same_dn(&a, &b));
    }

    #[test]
    fn escaped_commas_stay_inside_a_value() {
        let attrs = parse_rfc4514(r"O=Acme\, Inc.,CN=x").unwrap_or_default();
        assert_eq!(attrs[0], ("O".to_string(), "Acme, Inc.".to_string()));
        assert_eq!(render(&attrs), r"O=Acme\, Inc.,CN=x");
    }

    #[test]
    fn malformed_dn_is_refused() {
        assert!(parse_rfc4514("CN").is_none());
        assert!(parse_rfc4514("CN=a,,O=b").is_none());
    }
}
