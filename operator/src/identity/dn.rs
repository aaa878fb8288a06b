//! Subject distinguished names in RFC 4514 string form (`CN=x,O=y,OU=z,C=GB`).
//!
//! Contract: [`SubjectDn::parse`] reads the string form (most significant RDN last, as
//! RFC 4514 writes it), [`SubjectDn::to_rcgen`] builds the X.509 name in ASN.1 order, and
//! [`rfc4514_from_x509`] writes a parsed certificate's name back in the same string form, so
//! `parse(s) → certificate → rfc4514_from_x509` returns the canonical `s`. The same input
//! always yields the same DER, which keeps the DN identical across renewals (what an AS
//! using `tls_client_auth_subject_dn` matches). Limits: one attribute per RDN (no `+`), no
//! `#hex` values, each attribute type at most once (rcgen holds one value per type).
//! Pure functions, no I/O.

use std::fmt;

use super::error::IdentityError;
use crate::hex::hex;

/// Known attribute types: RFC 4514 §3 keywords plus `serialNumber` and `emailAddress`.
const ATTRIBUTES: &[(&str, &[u64])] = &[
    ("CN", &[2, 5, 4, 3]),
    ("L", &[2, 5, 4, 7]),
    ("ST", &[2, 5, 4, 8]),
    ("O", &[2, 5, 4, 10]),
    ("OU", &[2, 5, 4, 11]),
    ("C", &[2, 5, 4, 6]),
    ("STREET", &[2, 5, 4, 9]),
    ("DC", &[0, 9, 2342, 19200300, 100, 1, 25]),
    ("UID", &[0, 9, 2342, 19200300, 100, 1, 1]),
    ("serialNumber", &[2, 5, 4, 5]),
    ("emailAddress", &[1, 2, 840, 113549, 1, 9, 1]),
];

/// One `type=value` pair of a subject DN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnAttribute {
    /// The attribute type OID.
    pub oid: Vec<u64>,
    /// The attribute value, unescaped.
    pub value: String,
}

/// A parsed subject DN, attributes kept in RFC 4514 string order (most significant last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectDn {
    attributes: Vec<DnAttribute>,
}

fn invalid(reason: impl Into<String>) -> IdentityError {
    IdentityError::ParseSubject {
        reason: reason.into(),
    }
}

impl SubjectDn {
    /// Parses an RFC 4514 string. Spaces around `,` and `=` are tolerated.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let mut attributes: Vec<DnAttribute> = Vec::new();
        for rdn in split_unescaped(input, ',')? {
            if split_unescaped(&rdn, '+')?.len() > 1 {
                return Err(invalid("multi-valued RDNs (+) are not supported"));
            }
            let (ty, raw_value) = rdn
                .split_once('=')
                .ok_or_else(|| invalid("an RDN lacks '='"))?;
            let oid = attribute_oid(ty.trim())?;
            let value = unescape(raw_value.trim_start())?;
            if value.is_empty() {
                return Err(invalid(format!("empty value for {}", ty.trim())));
            }
            if attributes.iter().any(|a| a.oid == oid) {
                return Err(invalid(format!(
                    "attribute {} appears more than once",
                    ty.trim()
                )));
            }
            attributes.push(DnAttribute { oid, value });
        }
        if attributes.is_empty() {
            return Err(invalid("the DN is empty"));
        }
        Ok(Self { attributes })
    }

    /// The attributes in RFC 4514 string order.
    pub fn attributes(&self) -> &[DnAttribute] {
        &self.attributes
    }

    /// The rcgen name, in ASN.1 order (the reverse of the string). `C` and `serialNumber`
    /// are PrintableString, `DC` and `emailAddress` IA5String, the rest UTF8String.
    pub fn to_rcgen(&self) -> Result<rcgen::DistinguishedName, IdentityError> {
        use rcgen::{DnType, DnValue};
        let mut name = rcgen::DistinguishedName::new();
        for attr in self.attributes.iter().rev() {
            let ty = match attr.oid.as_slice() {
                [2, 5, 4, 3] => DnType::CommonName,
                [2, 5, 4, 6] => DnType::CountryName,
                [2, 5, 4, 7] => DnType::LocalityName,
                [2, 5, 4, 8] => DnType::StateOrProvinceName,
                [2, 5, 4, 10] => DnType::OrganizationName,
                [2, 5, 4, 11] => DnType::OrganizationalUnitName,
                other => DnType::CustomDnType(other.to_vec()),
            };
            let not_encodable = |kind: &str| {
                invalid(format!(
                    "value of {} is not a valid {kind}",
                    keyword(&attr.oid)
                ))
            };
            let value = match attr.oid.as_slice() {
                [2, 5, 4, 6] | [2, 5, 4, 5] => DnValue::PrintableString(
                    attr.value
                        .as_str()
                        .try_into()
                        .map_err(|_| not_encodable("PrintableString"))?,
                ),
                [0, 9, 2342, 19200300, 100, 1, 25] | [1, 2, 840, 113549, 1, 9, 1] => {
                    DnValue::Ia5String(
                        attr.value
                            .as_str()
                            .try_into()
                            .map_err(|_| not_encodable("IA5String"))?,
                    )
                }
                _ => DnValue::Utf8String(attr.value.clone()),
            };
            name.push(ty, value);
        }
        Ok(name)
    }
}

impl fmt::Display for SubjectDn {
    /// The canonical RFC 4514 string: no spaces, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attr) in self.attributes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", keyword(&attr.oid), escape(&attr.value))?;
        }
        Ok(())
    }
}

/// Writes a certificate name in RFC 4514 string form (RDNs reversed, `+` inside an RDN,
/// values that are not strings as `#` + DER hex).
pub fn rfc4514_from_x509(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid: Vec<u64> = atv
                        .attr_type()
                        .iter()
                        .map(|it| it.collect())
                        .unwrap_or_default();
                    let value = match atv.as_str() {
                        Ok(s) => escape(s),
                        Err(_) => format!("#{}", hex(atv.attr_value().data)),
                    };
                    format!("{}={value}", keyword(&oid))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute_oid(ty: &str) -> Result<Vec<u64>, IdentityError> {
    if let Some((_, oid)) = ATTRIBUTES.iter().find(|(k, _)| k.eq_ignore_ascii_case(ty)) {
        return Ok(oid.to_vec());
    }
    let dotted = ty
        .strip_prefix("OID.")
        .or_else(|| ty.strip_prefix("oid."))
        .unwrap_or(ty);
    let oid: Option<Vec<u64>> = dotted
        .split('.')
        .map(|part| part.parse::<u64>().ok())
        .collect();
    match oid {
        Some(oid) if oid.len() >= 2 => Ok(oid),
        _ => Err(invalid(format!("unknown attribute type {ty:?}"))),
    }
}

fn keyword(oid: &[u64]) -> String {
    ATTRIBUTES.iter().find(|(_, o)| *o == oid).map_or_else(
        || oid.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
        |(k, _)| (*k).to_owned(),
    )
}

/// Splits on `sep` where it is not escaped by a backslash.
fn split_unescaped(input: &str, sep: char) -> Result<Vec<String>, IdentityError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            current.push(chars.next().ok_or_else(|| invalid("trailing backslash"))?);
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(parts)
}

/// Removes RFC 4514 escapes (`\,` and `\2C` forms) and unescaped trailing spaces.
fn unescape(raw: &str) -> Result<String, IdentityError> {
    if raw.starts_with('#') {
        return Err(invalid("#hex attribute values are not supported"));
    }
    let trimmed = trim_unescaped_end(raw);
    let mut bytes = Vec::with_capacity(trimmed.len());
    let mut iter = trimmed.bytes().peekable();
    while let Some(b) = iter.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let first = iter.next().ok_or_else(|| invalid("trailing backslash"))?;
        match (
            char::from(first).to_digit(16),
            iter.peek().and_then(|n| char::from(*n).to_digit(16)),
        ) {
            (Some(hi), Some(lo)) => {
                iter.next();
                // Both digits are < 16, so the value fits a byte.
                bytes.push(u8::try_from(hi * 16 + lo).unwrap_or_default());
            }
            _ if b" \"#+,;<>\\=".contains(&first) => bytes.push(first),
            _ => return Err(invalid("invalid escape sequence")),
        }
    }
    String::from_utf8(bytes).map_err(|_| invalid("escaped bytes are not UTF-8"))
}

fn trim_unescaped_end(raw: &str) -> &str {
    let mut end = raw.len();
    while end > 0 && raw.as_bytes()[end - 1] == b' ' {
        // A space preceded by an odd number of backslashes is escaped: keep it.
        let slashes = raw.as_bytes()[..end - 1]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if slashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &raw[..end]
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_obie_style_dn_and_prints_it_back_canonically() {
        let dn = SubjectDn::parse(
            "C=GB, O=OpenBanking, OU=0015800001041RHAAY, CN=5aRav7KBdrEqqs1e1fwNgk",
        )
        .unwrap();
        assert_eq!(
            dn.to_string(),
            "C=GB,O=OpenBanking,OU=0015800001041RHAAY,CN=5aRav7KBdrEqqs1e1fwNgk"
        );
        assert_eq!(dn.attributes()[0].oid, vec![2, 5, 4, 6]);
    }

    #[test]
    fn unescapes_and_re_escapes_special_characters() {
        let dn = SubjectDn::parse(r"CN=Smith\, John\2C Jr,O=a\+b").unwrap();
        assert_eq!(dn.attributes()[0].value, "Smith, John, Jr");
        assert_eq!(dn.attributes()[1].value, "a+b");
        assert_eq!(dn.to_string(), r"CN=Smith\, John\, Jr,O=a\+b");
    }

    #[test]
    fn accepts_dotted_oid_types() {
        let dn = SubjectDn::parse("2.5.4.97=PSDGB-OB-Unknown,CN=x").unwrap();
        assert_eq!(dn.attributes()[0].oid, vec![2, 5, 4, 97]);
        assert_eq!(dn.to_string(), "2.5.4.97=PSDGB-OB-Unknown,CN=x");
    }

    #[test]
    fn rejects_what_rcgen_cannot_represent_or_is_malformed() {
        for bad in [
            "",
            "CN",
            "CN=a+O=b",
            "OU=a,OU=b",
            "XX=y",
            "CN=#0403",
            "CN=",
            r"CN=a\",
            "C=G_B",
        ] {
            let parsed = SubjectDn::parse(bad).and_then(|dn| dn.to_rcgen());
            assert!(
                matches!(parsed, Err(IdentityError::ParseSubject { .. })),
                "{bad:?} should be rejected"
            );
        }
    }
}
