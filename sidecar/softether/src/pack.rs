//! The SoftEther "Pack" container (`src/Mayaqua/Pack.c`): named, typed, possibly multi-valued
//! elements, serialized big-endian. See softether-protocol.md §4.
//!
//! Decoding is strict where the C reader is strict (duplicate names, zero-valued elements, zero
//! name length, size limits) and additionally fails on truncation instead of reading zeros.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Element count limit of the 64-bit C reader (`MAX_ELEMENT_NUM`).
pub const MAX_ELEMENTS: u32 = 262_144;
/// Largest pack body the server accepts in a POST (`HTTP_PACK_MAX_SIZE`).
pub const MAX_REQUEST_PACK: usize = 65_536;
/// Values per element limit (`MAX_VALUE_NUM`).
pub const MAX_VALUES: u32 = 262_144;
/// One DATA/STR/UNISTR value limit (`MAX_VALUE_SIZE`, 384 MiB).
pub const MAX_VALUE_SIZE: u32 = 384 * 1024 * 1024;
/// Longest element name the C reader keeps (`MAX_ELEMENT_NAME_LEN`); longer names are truncated.
pub const MAX_NAME_LEN: usize = 63;

const TYPE_INT: u32 = 0;
const TYPE_DATA: u32 = 1;
const TYPE_STR: u32 = 2;
const TYPE_UNISTR: u32 = 3;
const TYPE_INT64: u32 = 4;

/// One value of an element. All values of one element share the same variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// INT: 32-bit unsigned.
    Int(u32),
    /// DATA: raw bytes.
    Data(Vec<u8>),
    /// STR: exact-length byte string (decoded lossily as UTF-8, since the C side does not care).
    Str(String),
    /// UNISTR: UTF-8 with a trailing NUL on the wire.
    UniStr(String),
    /// INT64: 64-bit unsigned.
    Int64(u64),
}

impl Value {
    fn type_code(&self) -> u32 {
        match self {
            Value::Int(_) => TYPE_INT,
            Value::Data(_) => TYPE_DATA,
            Value::Str(_) => TYPE_STR,
            Value::UniStr(_) => TYPE_UNISTR,
            Value::Int64(_) => TYPE_INT64,
        }
    }
}

/// Why a buffer is not a valid pack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The buffer ends inside an element.
    #[error("pack truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where the missing bytes start.
        offset: usize,
        /// How many more bytes were needed.
        needed: usize,
    },
    /// More elements than [`MAX_ELEMENTS`] (the declared count).
    #[error("pack declares {0} elements (limit {MAX_ELEMENTS})")]
    TooManyElements(u32),
    /// An element declares more than [`MAX_VALUES`] values.
    #[error("pack element {name:?} declares {count} values (limit {MAX_VALUES})")]
    TooManyValues {
        /// The element's name.
        name: String,
        /// The declared count.
        count: u32,
    },
    /// An element has a value type other than INT, DATA, STR, UNISTR, INT64.
    #[error("pack element {name:?} has unknown value type {code}")]
    BadType {
        /// The element's name.
        name: String,
        /// The type code found.
        code: u32,
    },
    /// An element name appears twice.
    #[error("pack contains the element name {0:?} twice (names are case-insensitive)")]
    DuplicateName(String),
    /// An element with zero values (the element's name).
    #[error("pack element {0:?} has no values")]
    EmptyElement(String),
    /// An element name is empty.
    #[error("pack element name has length 0")]
    EmptyName,
    /// A value is larger than [`MAX_VALUE_SIZE`].
    #[error("pack element {name:?} has a value of {size} bytes (limit {MAX_VALUE_SIZE})")]
    TooLarge {
        /// The element's name.
        name: String,
        /// The declared size in bytes.
        size: u32,
    },
    /// A UNISTR value is not UTF-8 (the element's name).
    #[error("pack element {0:?} is not valid UTF-8")]
    BadUtf8(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Element {
    name: String,
    values: Vec<Value>,
}

/// An ordered set of elements (order is preserved for encoding; lookups are by name).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pack {
    elements: Vec<Element>,
}

/// Element names whose values are credentials or session secrets; Debug prints them redacted.
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["password", "ticket", "session_key", "sign", "key", "random"]
        .iter()
        .any(|s| lower.contains(s))
}

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for e in &self.elements {
            if is_secret_name(&e.name) {
                m.entry(&e.name, &"<redacted>");
            } else {
                m.entry(&e.name, &e.values);
            }
        }
        m.finish()
    }
}

/// Bounds-checked big-endian reader over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PackError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.get(..n) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(PackError::Truncated {
                offset: self.pos,
                needed: n - rest.len(),
            }),
        }
    }

    fn u32(&mut self) -> Result<u32, PackError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PackError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

fn sized_value<'a>(r: &mut Reader<'a>, name: &str) -> Result<&'a [u8], PackError> {
    let size = r.u32()?;
    if size > MAX_VALUE_SIZE {
        return Err(PackError::TooLarge {
            name: name.to_owned(),
            size,
        });
    }
    r.take(size as usize)
}

fn read_value(r: &mut Reader<'_>, name: &str, code: u32) -> Result<Value, PackError> {
    Ok(match code {
        TYPE_INT => Value::Int(r.u32()?),
        TYPE_INT64 => Value::Int64(r.u64()?),
        TYPE_DATA => Value::Data(sized_value(r, name)?.to_vec()),
        TYPE_STR => Value::Str(String::from_utf8_lossy(sized_value(r, name)?).into_owned()),
        TYPE_UNISTR => {
            let raw = sized_value(r, name)?;
            // The C reader treats the value as a NUL-terminated string.
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            let s = std::str::from_utf8(&raw[..end])
                .map_err(|_| PackError::BadUtf8(name.to_owned()))?;
            Value::UniStr(s.to_owned())
        }
        other => {
            return Err(PackError::BadType {
                name: name.to_owned(),
                code: other,
            })
        }
    })
}

fn min_value_size(code: u32) -> usize {
    if code == TYPE_INT64 {
        8
    } else {
        4
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn ipv4_to_int(ip: Ipv4Addr) -> u32 {
    // The C code keeps the address bytes in memory order and the writer byte-swaps, so the wire
    // bytes are the address reversed: 192.168.1.10 -> 0a 01 a8 c0.
    u32::from_le_bytes(ip.octets())
}

fn int_to_ipv4(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_le_bytes())
}

impl Pack {
    /// An empty pack.
    pub fn new() -> Self {
        Pack::default()
    }

    /// Parses a serialized pack. Trailing bytes after the last element are ignored (as in C).
    pub fn decode(buf: &[u8]) -> Result<Pack, PackError> {
        let mut r = Reader { buf, pos: 0 };
        let count = r.u32()?;
        if count > MAX_ELEMENTS {
            return Err(PackError::TooManyElements(count));
        }
        // Never trust a count for allocation: an element needs at least 16 bytes.
        let mut elements = Vec::with_capacity((count as usize).min(r.remaining() / 16));
        let mut seen = HashSet::with_capacity(elements.capacity());
        for _ in 0..count {
            let name_len = r.u32()?;
            if name_len == 0 {
                return Err(PackError::EmptyName);
            }
            let raw_name = r.take(name_len as usize - 1)?;
            let raw_name = &raw_name[..raw_name.len().min(MAX_NAME_LEN)];
            let name = std::str::from_utf8(raw_name)
                .map_err(|_| PackError::BadUtf8(String::from_utf8_lossy(raw_name).into_owned()))?
                .to_owned();
            let code = r.u32()?;
            let num = r.u32()?;
            if num > MAX_VALUES {
                return Err(PackError::TooManyValues { name, count: num });
            }
            if num == 0 {
                return Err(PackError::EmptyElement(name));
            }
            if code > TYPE_INT64 {
                return Err(PackError::BadType { name, code });
            }
            let cap = (num as usize).min(r.remaining() / min_value_size(code));
            let mut values = Vec::with_capacity(cap);
            for _ in 0..num {
                values.push(read_value(&mut r, &name, code)?);
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(PackError::DuplicateName(name));
            }
            elements.push(Element { name, values });
        }
        Ok(Pack { elements })
    }

    /// The wire encoding (§4); never fails.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        put_u32(&mut out, self.elements.len() as u32);
        for e in &self.elements {
            put_u32(&mut out, e.name.len() as u32 + 1);
            out.extend_from_slice(e.name.as_bytes());
            let code = e.values.first().map_or(TYPE_INT, Value::type_code);
            put_u32(&mut out, code);
            put_u32(&mut out, e.values.len() as u32);
            for v in &e.values {
                match v {
                    Value::Int(i) => put_u32(&mut out, *i),
                    Value::Int64(i) => out.extend_from_slice(&i.to_be_bytes()),
                    Value::Data(d) => put_sized(&mut out, d),
                    Value::Str(s) => put_sized(&mut out, s.as_bytes()),
                    Value::UniStr(s) => {
                        put_u32(&mut out, s.len() as u32 + 1);
                        out.extend_from_slice(s.as_bytes());
                        out.push(0);
                    }
                }
            }
        }
        out
    }

    fn encoded_len_hint(&self) -> usize {
        let values: usize = self
            .elements
            .iter()
            .flat_map(|e| &e.values)
            .map(|v| match v {
                Value::Data(d) => 4 + d.len(),
                Value::Str(s) | Value::UniStr(s) => 5 + s.len(),
                _ => 8,
            })
            .sum();
        4 + self
            .elements
            .iter()
            .map(|e| 12 + e.name.len())
            .sum::<usize>()
            + values
    }

    /// Adds an element with several values. An existing element of the same name (compared
    /// case-insensitively) is replaced. Values whose type differs from the first value's are
    /// dropped, and an empty list adds nothing, because the wire format cannot carry either.
    pub fn add_values(&mut self, name: &str, mut values: Vec<Value>) {
        let Some(code) = values.first().map(Value::type_code) else {
            self.remove(name);
            return;
        };
        debug_assert!(
            values.iter().all(|v| v.type_code() == code),
            "mixed types in {name}"
        );
        values.retain(|v| v.type_code() == code);
        debug_assert!(
            !name.is_empty() && name.len() <= MAX_NAME_LEN,
            "bad element name {name:?}"
        );
        match self
            .elements
            .iter_mut()
            .find(|e| e.name.eq_ignore_ascii_case(name))
        {
            Some(e) => e.values = values,
            None => self.elements.push(Element {
                name: name.to_owned(),
                values,
            }),
        }
    }

    /// Removes the element `name`, if present.
    pub fn remove(&mut self, name: &str) {
        self.elements.retain(|e| !e.name.eq_ignore_ascii_case(name));
    }

    /// Adds an INT element (replacing one of the same name).
    pub fn add_int(&mut self, name: &str, v: u32) {
        self.add_values(name, vec![Value::Int(v)]);
    }

    /// Adds an INT64 element (replacing one of the same name).
    pub fn add_int64(&mut self, name: &str, v: u64) {
        self.add_values(name, vec![Value::Int64(v)]);
    }

    /// Booleans are INT 0/1 (`PackAddBool`).
    pub fn add_bool(&mut self, name: &str, v: bool) {
        self.add_int(name, u32::from(v));
    }

    /// Adds a STR element (replacing one of the same name).
    pub fn add_str(&mut self, name: &str, v: &str) {
        self.add_values(name, vec![Value::Str(v.to_owned())]);
    }

    /// Adds a UNISTR element (replacing one of the same name).
    pub fn add_unistr(&mut self, name: &str, v: &str) {
        self.add_values(name, vec![Value::UniStr(v.to_owned())]);
    }

    /// Adds a DATA element (replacing one of the same name).
    pub fn add_data(&mut self, name: &str, v: &[u8]) {
        self.add_values(name, vec![Value::Data(v.to_vec())]);
    }

    /// Adds the four elements of the C IP encoding (§4.3) for an IPv4 address.
    pub fn add_ipv4(&mut self, name: &str, ip: Ipv4Addr) {
        self.add_bool(&format!("{name}@ipv6_bool"), false);
        self.add_data(&format!("{name}@ipv6_array"), &ip.to_ipv6_mapped().octets());
        self.add_int(&format!("{name}@ipv6_scope_id"), 0);
        self.add_int(name, ipv4_to_int(ip));
    }

    /// Adds the four elements of the C IP encoding for an IPv6 address.
    pub fn add_ipv6(&mut self, name: &str, ip: Ipv6Addr, scope_id: u32) {
        self.add_bool(&format!("{name}@ipv6_bool"), true);
        self.add_data(&format!("{name}@ipv6_array"), &ip.octets());
        self.add_int(&format!("{name}@ipv6_scope_id"), scope_id);
        self.add_int(name, 0);
    }

    /// All values of `name` (case-insensitive).
    pub fn values(&self, name: &str) -> Option<&[Value]> {
        self.elements
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .map(|e| &e.values[..])
    }

    fn first(&self, name: &str) -> Option<&Value> {
        self.values(name).and_then(|v| v.first())
    }

    /// Whether an element `name` exists (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.values(name).is_some()
    }

    /// The first value of INT element `name`; `None` if absent or of another type.
    pub fn get_int(&self, name: &str) -> Option<u32> {
        match self.first(name)? {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The first value of INT64 element `name`; `None` if absent or of another type.
    pub fn get_int64(&self, name: &str) -> Option<u64> {
        match self.first(name)? {
            Value::Int64(v) => Some(*v),
            _ => None,
        }
    }

    /// Any non-zero INT is true; absent or wrongly typed is false (`PackGetBool`).
    pub fn get_bool(&self, name: &str) -> bool {
        self.get_int(name).is_some_and(|v| v != 0)
    }

    /// The first value of STR element `name`; `None` if absent or of another type.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.first(name)? {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The first value of UNISTR element `name`; `None` if absent or of another type.
    pub fn get_unistr(&self, name: &str) -> Option<&str> {
        match self.first(name)? {
            Value::UniStr(v) => Some(v),
            _ => None,
        }
    }

    /// The first value of DATA element `name`; `None` if absent or of another type.
    pub fn get_data(&self, name: &str) -> Option<&[u8]> {
        match self.first(name)? {
            Value::Data(v) => Some(v),
            _ => None,
        }
    }

    /// Reads the four-element IP encoding: IPv6 if `<name>@ipv6_bool` is set (then
    /// `<name>@ipv6_array` must be 16 bytes), else the INT `<name>` must exist.
    pub fn get_ip(&self, name: &str) -> Option<IpAddr> {
        if self.get_bool(&format!("{name}@ipv6_bool")) {
            let raw: [u8; 16] = self
                .get_data(&format!("{name}@ipv6_array"))?
                .try_into()
                .ok()?;
            return Some(IpAddr::V6(Ipv6Addr::from(raw)));
        }
        self.get_int(name).map(|v| IpAddr::V4(int_to_ipv4(v)))
    }

    /// All values of a multi-value INT element; empty if absent or not INT.
    pub fn get_ints(&self, name: &str) -> Vec<u32> {
        self.values(name)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect()
    }

    /// Elements in encoding order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Value])> {
        self.elements
            .iter()
            .map(|e| (e.name.as_str(), &e.values[..]))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the pack has no element.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
