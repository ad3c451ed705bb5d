//! The journal file: its line format, and reading it back with torn-tail recovery.
//!
//! Every line is `<crc32, 8 hex digits> <tag> <json>\n`, the checksum covering `<tag> <json>`.
//! The first line has the tag `header` and says which state history (lineage) the file
//! belongs to and after which serial its records continue; every other line is one
//! [`Record`] whose tag is the state's serial *after* it. Serials run without gaps.
//!
//! A journal file is always created whole (header written to a temporary file, synced, then
//! renamed into place), so its header is never torn. Records are only ever appended, and a
//! record is acknowledged only after its batch was synced. A crash mid-append therefore
//! damages at most the *last* line: the reader drops such a line (no newline, bad checksum,
//! bad JSON) and reports where, while damage anywhere else is an error — the bytes after it
//! were acknowledged records, and silently skipping them would forget real infrastructure.
//!
//! Reading streams the file through one reused buffer and deserialises each record once,
//! so resuming from a long journal costs one pass.

use std::fmt::Display;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::io_error;
use crate::state::{Record, StateError};

/// The tag of a journal's first line.
const HEADER_TAG: &str = "header";
/// The journal format this code writes and reads.
const FORMAT: u32 = 1;

/// A journal's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Header {
    /// Format version.
    pub format: u32,
    /// The state history the records belong to.
    pub lineage: String,
    /// The serial the first record follows (the snapshot's serial when the file was started).
    pub after: u64,
}

impl Header {
    /// The header of a journal for `lineage` whose records follow serial `after`.
    pub fn new(lineage: &str, after: u64) -> Self {
        Header {
            format: FORMAT,
            lineage: lineage.to_owned(),
            after,
        }
    }

    /// Writes the header line.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut line = Vec::with_capacity(json.len() + 20);
        encode_line(&mut line, HEADER_TAG, &json);
        out.write_all(&line)
    }
}

/// Appends one line (`crc tag json\n`) to `out`. `json` must hold no newline, which compact
/// serde_json output never does.
pub(super) fn encode_line(out: &mut Vec<u8>, tag: impl Display, json: &[u8]) {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let payload = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{tag} ");
    out.extend_from_slice(json);
    let crc = format!("{:08x}", crc32fast::hash(&out[payload..]));
    out[start..start + 8].copy_from_slice(crc.as_bytes());
    out.push(b'\n');
}

/// Splits a line (without its newline) into tag and JSON after checking its checksum.
fn decode_line(line: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("the line does not start with a checksum".into());
    }
    let stated = std::str::from_utf8(&line[..8])
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("the line does not start with a checksum")?;
    let payload = &line[9..];
    let actual = crc32fast::hash(payload);
    if stated != actual {
        return Err(format!(
            "checksum mismatch (stored {stated:08x}, computed {actual:08x})"
        ));
    }
    let space = payload
        .iter()
        .position(|&b| b == b' ')
        .ok_or("the line has no JSON body")?;
    Ok((&payload[..space], &payload[space + 1..]))
}

/// Decodes a record line into its serial and record.
fn decode_record(line: &[u8]) -> Result<(u64, Record), String> {
    let (tag, json) = decode_line(line)?;
    let seq = std::str::from_utf8(tag)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| format!("`{}` is not a serial", String::from_utf8_lossy(tag)))?;
    let record = serde_json::from_slice(json).map_err(|e| format!("bad record JSON: {e}"))?;
    Ok((seq, record))
}

/// Decodes a header line.
fn decode_header(line: &[u8]) -> Result<Header, String> {
    let (tag, json) = decode_line(line)?;
    if tag != HEADER_TAG.as_bytes() {
        return Err("the first line is not a journal header".into());
    }
    let header: Header =
        serde_json::from_slice(json).map_err(|e| format!("bad journal header: {e}"))?;
    if header.format != FORMAT {
        return Err(format!(
            "journal format {} is not supported (this bmac reads format {FORMAT})",
            header.format
        ));
    }
    Ok(header)
}

/// What the state before the journal looks like, to check the journal continues it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Base<'a> {
    /// The snapshot's lineage.
    pub lineage: &'a str,
    /// The snapshot's serial.
    pub serial: u64,
}

/// The outcome of reading a journal.
#[derive(Debug, Clone)]
pub(super) struct JournalScan {
    /// The header.
    pub header: Header,
    /// The serial of the last good record (`header.after` when there is none).
    pub last_seq: u64,
    /// Length in bytes of the good prefix (header and good records).
    pub valid_len: u64,
    /// Length in bytes of the header line.
    pub header_len: u64,
    /// The 1-based line of a torn last record that was dropped.
    pub torn_line: Option<usize>,
}

impl JournalScan {
    /// The warning for a dropped torn record, if there was one.
    pub fn torn_warning(&self, path: &Path) -> Option<String> {
        self.torn_line.map(|line| {
            format!(
                "dropped a torn record at the end of {} (line {line}); the step it described \
                 will be observed on the next apply",
                path.display()
            )
        })
    }
}

/// Reads the journal at `path` (`None` if there is none), checking it continues `base`
/// (the snapshot, if any), and hands every good record to `visit` with its serial.
pub(super) fn read_journal(
    path: &Path,
    base: Option<Base<'_>>,
    mut visit: impl FnMut(u64, Record),
) -> Result<Option<JournalScan>, StateError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let corrupt = |line: usize, reason: String| StateError::Corrupt {
        path: path.display().to_string(),
        line,
        reason,
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::with_capacity(4096);
    let n = reader
        .read_until(b'\n', &mut buf)
        .map_err(|e| io_error(path, e))?;
    if n == 0 || buf[n - 1] != b'\n' {
        return Err(corrupt(
            1,
            "the journal header is missing or incomplete".into(),
        ));
    }
    let header = decode_header(&buf[..n - 1]).map_err(|r| corrupt(1, r))?;
    check_continuity(&header, base).map_err(|r| corrupt(1, r))?;

    let mut scan = JournalScan {
        last_seq: header.after,
        valid_len: n as u64,
        header_len: n as u64,
        torn_line: None,
        header,
    };
    let mut line_no = 1;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = buf[n - 1] == b'\n';
        let decoded = if complete {
            decode_record(&buf[..n - 1])
        } else {
            Err("the line has no end".into())
        };
        match decoded {
            Ok((seq, record)) => {
                let expected = scan.last_seq + 1;
                if seq != expected {
                    return Err(corrupt(
                        line_no,
                        format!("expected record {expected} but found record {seq}"),
                    ));
                }
                visit(seq, record);
                scan.last_seq = seq;
                scan.valid_len += n as u64;
            }
            Err(reason) => {
                let at_end =
                    !complete || reader.fill_buf().map_err(|e| io_error(path, e))?.is_empty();
                if !at_end {
                    return Err(corrupt(line_no, reason));
                }
                scan.torn_line = Some(line_no);
                break;
            }
        }
    }
    Ok(Some(scan))
}

/// Checks that a journal with `header` continues the snapshot `base`.
fn check_continuity(header: &Header, base: Option<Base<'_>>) -> Result<(), String> {
    match base {
        None if header.after > 0 => Err(format!(
            "the journal continues after record {} but there is no snapshot holding the \
             records before it",
            header.after
        )),
        None => Ok(()),
        Some(base) if base.lineage != header.lineage => Err(format!(
            "the journal belongs to state lineage {} but the snapshot to lineage {}",
            header.lineage, base.lineage
        )),
        Some(base) if header.after > base.serial => Err(format!(
            "the journal continues after record {} but the snapshot ends at record {}; \
             the records in between are missing",
            header.after, base.serial
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_detect_damage() {
        let mut out = Vec::new();
        encode_line(&mut out, 42, br#"{"id":"a","record":"destroyed"}"#);
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..out.len() - 1];
        let (seq, record) = decode_record(line).unwrap();
        assert_eq!(seq, 42);
        assert_eq!(record.id.as_str(), "a");

        let mut flipped = line.to_vec();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        assert!(decode_record(&flipped).unwrap_err().contains("checksum"));
        assert!(decode_record(&line[..line.len() - 4]).is_err());
        assert!(decode_record(b"zz").is_err());
    }

    #[test]
    fn headers_round_trip_and_are_not_records() {
        let mut out = Vec::new();
        Header::new("abc", 7).write_to(&mut out).unwrap();
        let line = &out[..out.len() - 1];
        assert_eq!(decode_header(line).unwrap(), Header::new("abc", 7));
        assert!(decode_record(line).unwrap_err().contains("not a serial"));
    }

    #[test]
    fn continuity_rules() {
        let h = Header::new("L", 5);
        assert!(check_continuity(&h, None).is_err());
        assert!(check_continuity(&Header::new("L", 0), None).is_ok());
        let base = |serial| {
            Some(Base {
                lineage: "L",
                serial,
            })
        };
        assert!(check_continuity(&h, base(5)).is_ok());
        assert!(
            check_continuity(&h, base(9)).is_ok(),
            "records ≤ 9 are skipped"
        );
        assert!(check_continuity(&h, base(4))
            .unwrap_err()
            .contains("missing"));
        let other = Some(Base {
            lineage: "M",
            serial: 5,
        });
        assert!(check_continuity(&h, other).unwrap_err().contains("lineage"));
    }
}
