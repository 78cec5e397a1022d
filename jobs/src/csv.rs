//! RFC 4180 records of the vendor's `movie_review.csv`, with line numbers and reject reasons.
//!
//! The file is read as RFC 4180 (Spark with `multiLine=true, escape='"'`): a field that starts
//! with `"` is quoted and may hold commas, line breaks and doubled quotes (`""` is one `"`). A
//! `"` anywhere else is an ordinary character, as in Spark. An empty field is null, quoted
//! (`""`) or not, as Spark 4.3 reads it (measured by the PySpark comparison test). A record ends at a line feed outside quotes; a CR just before it
//! is dropped, so CRLF files read like LF files. Blank lines are not records.
//!
//! Reading happens in two steps so that the expensive one can run in parallel:
//! [`record_spans`] walks the whole file once, jumping from quote to line feed with `memchr2`,
//! and cuts it into [`RecordSpan`]s; [`parse_record`] then splits one span into fields and can
//! run on any subset of the spans. A record that cannot be read (wrong field count, invalid
//! UTF-8, a quote never closed, text after a closing quote) becomes a [`Reject`] with its line
//! number: nothing is dropped silently.
//!
//! Line endings are detected as Spark does with `multiLine=true` (univocity's detection): the
//! first line break of the file decides. LF and CRLF files end records at a line feed (a CR
//! before it is dropped); a file whose first line break is a lone CR ends records at CRs, and
//! its line numbers count CRs.

use std::borrow::Cow;

/// Where one record sits in the file: `bytes[start..end]`, without its line terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Byte offset of the record's first byte.
    pub start: usize,
    /// Byte offset just past the record's last byte (before `\r\n` or `\n`).
    pub end: usize,
    /// 1-based line on which the record starts (the header is line 1), for reject reports.
    pub line: u64,
    /// `false` when a quoted field was still open at the end of the file.
    pub closed: bool,
}

/// Why a record could not be read; the record itself is kept beside it in the rejects output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Line on which the record starts.
    pub line: u64,
    /// What is wrong, in words a vendor can act on.
    pub reason: String,
}

/// The header of a review file: how many fields a record has and where the columns we use are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewHeader {
    /// Number of fields every record must have.
    pub field_count: usize,
    /// Index of the `cid` field.
    pub cid: usize,
    /// Index of the `review_str` field.
    pub review_str: usize,
    /// Byte offset where the header starts (3 when the file starts with a UTF-8 BOM).
    pub start: usize,
}

/// A problem with the file as a whole: it cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("the file is empty: it has no header line (expected a header like `cid,review_str,id_review`)")]
    Empty,
    #[error("line 1 (the header) cannot be read: {reason}")]
    Unreadable { reason: String },
    #[error("the header has no `{column}` column; it has: {found}. The vendor file needs a header with `cid` and `review_str`")]
    MissingColumn { column: &'static str, found: String },
    #[error("the header names `{column}` twice, in columns {first} and {second}; ask the vendor for a header with each name once")]
    DuplicateColumn { column: String, first: usize, second: usize },
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The byte that ends a record, decided by the first line break in `bytes` (the file's start):
/// `\n` for LF and CRLF files, `\r` for CR-only files.
pub fn record_end(bytes: &[u8]) -> u8 {
    match memchr::memchr2(b'\r', b'\n', bytes) {
        Some(at) if bytes[at] == b'\r' && bytes.get(at + 1) != Some(&b'\n') => b'\r',
        _ => b'\n',
    }
}

/// Cuts `bytes` into records, the header included, in one pass.
pub fn record_spans(bytes: &[u8]) -> Vec<RecordSpan> {
    let from = if bytes.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
    records_from(bytes, from, 1, record_end(bytes))
}

/// Cuts `bytes[from..]`, which starts at a record, into records ending at `eol` bytes; the first
/// one starts on line `first_line`. A split of a file ([`crate::splits`]) is read so.
pub fn records_from(bytes: &[u8], from: usize, first_line: u64, eol: u8) -> Vec<RecordSpan> {
    let mut spans = Vec::with_capacity((bytes.len() - from.min(bytes.len())) / 512 + 1);
    let mut pos = from;
    let mut line = first_line;
    while pos < bytes.len() {
        let (span, next, lines) = next_record(bytes, pos, line, eol);
        if span.end > span.start || !span.closed {
            spans.push(span);
        }
        pos = next;
        line += lines;
    }
    spans
}

/// Reads one record starting at `start` that ends at an `eol` byte; returns it, where the next
/// one starts, and how many line breaks were consumed.
fn next_record(bytes: &[u8], start: usize, line: u64, eol: u8) -> (RecordSpan, usize, u64) {
    let mut pos = start;
    let mut newlines = 0u64;
    loop {
        let Some(found) = memchr::memchr2(b'"', eol, &bytes[pos..]) else {
            let span = RecordSpan { start, end: trim_cr(bytes, start, bytes.len()), line, closed: true };
            return (span, bytes.len(), newlines);
        };
        let at = pos + found;
        if bytes[at] == eol {
            let span = RecordSpan { start, end: trim_cr(bytes, start, at), line, closed: true };
            return (span, at + 1, newlines + 1);
        }
        let opens_quoted_field = at == start || bytes[at - 1] == b',';
        if !opens_quoted_field {
            pos = at + 1;
            continue;
        }
        match closing_quote(bytes, at + 1) {
            Some(close) => {
                newlines += count_line_breaks(&bytes[at..close], eol);
                pos = close + 1;
            }
            None => {
                let span = RecordSpan { start, end: bytes.len(), line, closed: false };
                return (span, bytes.len(), newlines + count_line_breaks(&bytes[at..], eol));
            }
        }
    }
}

/// Offset of the quote that closes a quoted field whose content starts at `from`.
fn closing_quote(bytes: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        let at = pos + memchr::memchr(b'"', &bytes[pos..])?;
        if bytes.get(at + 1) == Some(&b'"') {
            pos = at + 2;
        } else {
            return Some(at);
        }
    }
}

fn trim_cr(bytes: &[u8], start: usize, end: usize) -> usize {
    if end > start && bytes[end - 1] == b'\r' { end - 1 } else { end }
}

fn count_line_breaks(bytes: &[u8], eol: u8) -> u64 {
    memchr::memchr_iter(eol, bytes).count() as u64
}

/// One field's text as the record holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldText<'a> {
    /// The value itself: an unquoted field, or a quoted one without doubled quotes.
    Plain(&'a str),
    /// A quoted field's content with its doubled quotes (`""`), each one `"` in the value.
    Escaped(&'a str),
}

impl<'a> FieldText<'a> {
    /// The value in pieces whose concatenation it is (each doubled quote made one), so that a
    /// caller can write it where it goes without building it first.
    pub fn pieces(self) -> impl Iterator<Item = &'a str> {
        let (text, escaped) = match self {
            FieldText::Plain(text) => (text, false),
            FieldText::Escaped(text) => (text, true),
        };
        let mut rest = Some(text);
        std::iter::from_fn(move || {
            let current = rest?;
            match memchr::memchr(b'"', current.as_bytes()).filter(|_| escaped) {
                // Up to and including the first quote of the pair; the piece after starts past both.
                Some(at) => {
                    rest = current.get(at + 2..);
                    Some(&current[..=at])
                }
                None => {
                    rest = None;
                    Some(current)
                }
            }
        })
    }

    /// The value, borrowed when it has no doubled quotes.
    pub fn value(self) -> Cow<'a, str> {
        match self {
            FieldText::Plain(text) => Cow::Borrowed(text),
            FieldText::Escaped(_) => Cow::Owned(self.pieces().collect()),
        }
    }
}

/// Splits one record into fields, appending them to `fields` (cleared first). `None` is null.
pub fn parse_record<'a>(bytes: &'a [u8], span: &RecordSpan, fields: &mut Vec<Option<Cow<'a, str>>>) -> Result<(), Reject> {
    fields.clear();
    let text = record_text(bytes, span)?;
    split_fields(text, |field| fields.push(field.map(FieldText::value))).map_err(|reason| Reject { line: span.line, reason })
}

/// Splits one record into its fields' texts, appending them to `fields` (cleared first).
/// `None` is null. Nothing is copied: a field with doubled quotes is returned as written.
pub fn record_fields<'a>(bytes: &'a [u8], span: &RecordSpan, fields: &mut Vec<Option<FieldText<'a>>>) -> Result<(), Reject> {
    fields.clear();
    let text = record_text(bytes, span)?;
    split_fields(text, |field| fields.push(field)).map_err(|reason| Reject { line: span.line, reason })
}

/// The record's bytes as text, or why it cannot be read as fields.
fn record_text<'a>(bytes: &'a [u8], span: &RecordSpan) -> Result<&'a str, Reject> {
    let reject = |reason: String| Reject { line: span.line, reason };
    if !span.closed {
        return Err(reject(format!(
            "a quoted field opened in the record starting on line {} is never closed; \
             the rest of the file was read as part of it",
            span.line
        )));
    }
    std::str::from_utf8(&bytes[span.start..span.end])
        .map_err(|e| reject(format!("invalid UTF-8 at byte {} of the record; the file must be UTF-8", e.valid_up_to())))
}

/// Splits UTF-8 record text into fields, handing each to `push` in order. Slicing happens only
/// at ASCII `,` and `"`, which are always character boundaries.
fn split_fields<'a>(text: &'a str, mut push: impl FnMut(Option<FieldText<'a>>)) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut field_no = 1;
    loop {
        let after = if bytes.get(pos) == Some(&b'"') {
            let (value, after) = quoted_field(text, pos + 1);
            push(Some(value).filter(|v| *v != FieldText::Plain("")));
            match bytes.get(after) {
                None | Some(b',') => after,
                Some(_) => {
                    return Err(format!(
                        "field {field_no} has text after its closing quote; a quote inside a \
                         quoted field must be doubled (\"\")"
                    ));
                }
            }
        } else {
            let end = memchr::memchr(b',', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            push((end > pos).then(|| FieldText::Plain(&text[pos..end])));
            end
        };
        if after >= bytes.len() {
            return Ok(());
        }
        pos = after + 1; // past the comma; a trailing comma yields one more (null) field
        field_no += 1;
        if pos == bytes.len() {
            push(None);
            return Ok(());
        }
    }
}

/// Reads a quoted field whose content starts at `from` (the record is known to close it).
/// Returns its content as written and the offset just past the closing quote.
fn quoted_field(text: &str, from: usize) -> (FieldText<'_>, usize) {
    let bytes = text.as_bytes();
    let mut escaped = false;
    let mut pos = from;
    loop {
        let at = match memchr::memchr(b'"', &bytes[pos..]) {
            Some(i) => pos + i,
            None => bytes.len(), // unreachable for closed spans; treat the rest as the value
        };
        if bytes.get(at + 1) != Some(&b'"') {
            let content = &text[from..at];
            let field = if escaped { FieldText::Escaped(content) } else { FieldText::Plain(content) };
            return (field, (at + 1).min(bytes.len()));
        }
        escaped = true;
        pos = at + 2;
    }
}

/// Reads the header (the first record) and finds the columns the classifier needs.
/// Column names are compared case-insensitively, ignoring surrounding spaces, as Spark does.
pub fn parse_header(bytes: &[u8], first: Option<&RecordSpan>) -> Result<ReviewHeader, HeaderError> {
    let span = first.ok_or(HeaderError::Empty)?;
    let mut fields = Vec::new();
    parse_record(bytes, span, &mut fields).map_err(|r| HeaderError::Unreadable { reason: r.reason })?;
    let names: Vec<String> = fields.iter().map(|f| f.as_deref().unwrap_or("").trim().to_ascii_lowercase()).collect();
    for (second, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
        if let Some(first) = names[..second].iter().position(|n| n == name) {
            return Err(HeaderError::DuplicateColumn { column: name.clone(), first: first + 1, second: second + 1 });
        }
    }
    let find =
        |column: &'static str| names.iter().position(|n| n == column).ok_or_else(|| HeaderError::MissingColumn { column, found: names.join(", ") });
    Ok(ReviewHeader { field_count: names.len(), cid: find("cid")?, review_str: find("review_str")?, start: span.start })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &str) -> Vec<Result<Vec<Option<String>>, Reject>> {
        let bytes = file.as_bytes();
        let spans = record_spans(bytes);
        spans
            .iter()
            .map(|span| {
                let mut fields = Vec::new();
                parse_record(bytes, span, &mut fields).map(|()| fields.iter().map(|f| f.as_deref().map(str::to_string)).collect())
            })
            .collect()
    }

    fn row(values: &[Option<&str>]) -> Result<Vec<Option<String>>, Reject> {
        Ok(values.iter().map(|v| v.map(str::to_string)).collect())
    }

    #[test]
    fn an_escaped_field_is_its_pieces_with_each_doubled_quote_once() {
        let value = |text| FieldText::Escaped(text).pieces().collect::<String>();
        assert_eq!(value(r#"say ""hi"""#), r#"say "hi""#);
        assert_eq!(value(r#""""#), r#"""#);
        assert_eq!(value(r#"""a"""#), r#""a""#);
        assert_eq!(FieldText::Plain(r#"a"b"#).pieces().collect::<String>(), r#"a"b"#, "a plain field is as written");
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_line_breaks() {
        let rows = read("cid,review_str,id\n1,\"a, \"\"b\"\"\nc\",7\n2,plain,8\n");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], row(&[Some("1"), Some("a, \"b\"\nc"), Some("7")]));
        assert_eq!(rows[2], row(&[Some("2"), Some("plain"), Some("8")]));
        let spans = record_spans(b"cid,review_str,id\n1,\"x\ny\",7\n2,z,8\n");
        assert_eq!(spans.iter().map(|s| s.line).collect::<Vec<_>>(), vec![1, 2, 4]);
    }

    #[test]
    fn empty_fields_are_null_quoted_or_not() {
        let rows = read("a,b,c\n,\"\",\n");
        assert_eq!(rows[1], row(&[None, None, None]));
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_literal() {
        let rows = read("a,b,c\n1,he said \"hi\" ok,3\n");
        assert_eq!(rows[1], row(&[Some("1"), Some("he said \"hi\" ok"), Some("3")]));
    }

    #[test]
    fn crlf_bom_and_blank_lines() {
        let file = "\u{feff}cid,review_str,id\r\n1,\"a\r\nb\",2\r\n\r\n3,c,4";
        let rows = read(file);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], row(&[Some("cid"), Some("review_str"), Some("id")]));
        assert_eq!(rows[1], row(&[Some("1"), Some("a\r\nb"), Some("2")]));
        assert_eq!(rows[2], row(&[Some("3"), Some("c"), Some("4")]));
        let spans = record_spans(file.as_bytes());
        assert_eq!(spans[2].line, 5);
    }

    #[test]
    fn unreadable_records_are_rejected_with_their_line() {
        let mut bytes = b"a,b\n1,\"x\"y\n2,ok\n3,\xff\xfe\n4,\"never closed\n5,z\n".to_vec();
        bytes.extend_from_slice(b"");
        let spans = record_spans(&bytes);
        let mut fields = Vec::new();
        let results: Vec<_> = spans.iter().map(|s| parse_record(&bytes, s, &mut fields).err()).collect();
        assert!(results[0].is_none() && results[2].is_none());
        assert_eq!(results[1].as_ref().map(|r| r.line), Some(2));
        assert!(results[1].as_ref().is_some_and(|r| r.reason.contains("after its closing quote")));
        assert!(results[3].as_ref().is_some_and(|r| r.line == 4 && r.reason.contains("UTF-8")));
        assert!(results[4].as_ref().is_some_and(|r| r.line == 5 && r.reason.contains("never closed")));
        assert_eq!(spans.len(), 5, "the unclosed quote swallows the rest of the file");
    }

    #[test]
    fn lf_crlf_and_cr_only_files_give_the_same_records() {
        let lf = "cid,review_str,id\n1,\"a\nb\",2\n\n3,c,4\n";
        let crlf = lf.replace('\n', "\r\n");
        let cr = lf.replace('\n', "\r");
        let fields = |file: &str| -> Vec<Vec<Option<String>>> {
            read(file)
                .into_iter()
                .map(|r| r.expect("readable").into_iter().map(|f| f.map(|v| v.replace("\r\n", "\n").replace('\r', "\n"))).collect())
                .collect()
        };
        assert_eq!(fields(lf).len(), 3);
        assert_eq!(fields(&crlf), fields(lf));
        assert_eq!(fields(&cr), fields(lf));
        let lines = |file: &str| record_spans(file.as_bytes()).iter().map(|s| s.line).collect::<Vec<_>>();
        assert_eq!(lines(&cr), lines(lf), "line numbers count CRs in a CR-only file");
    }

    #[test]
    fn a_name_twice_in_the_header_is_refused_with_both_columns() {
        let bytes = b"cid,CID,review_str\n";
        let err = parse_header(bytes, record_spans(bytes).first()).expect_err("cid twice");
        assert_eq!(err, HeaderError::DuplicateColumn { column: "cid".into(), first: 1, second: 2 });
        assert!(err.to_string().contains("columns 1 and 2"));
    }

    #[test]
    fn trailing_comma_is_one_more_null_field() {
        assert_eq!(read("a,b\n1,\n")[1], row(&[Some("1"), None]));
    }

    #[test]
    fn header_columns_are_found_by_name() {
        let bytes = b"id_review, CID ,Review_Str\n";
        let spans = record_spans(bytes);
        let header = parse_header(bytes, spans.first()).expect("header");
        assert_eq!((header.field_count, header.cid, header.review_str), (3, 1, 2));
        let missing = parse_header(b"cid,review\n", record_spans(b"cid,review\n").first());
        assert!(matches!(missing, Err(HeaderError::MissingColumn { column: "review_str", .. })));
        assert_eq!(parse_header(b"", None), Err(HeaderError::Empty));
    }
}
