//! Splitting one review file into byte ranges that many tasks read side by side, every record
//! exactly once and with its exact line number.
//!
//! A quoted field may hold line breaks, so a byte offset alone does not say whether a record
//! starts there: the same bytes are a record start outside quotes and review text inside them,
//! and a quoted field may hold what looks like whole records. Spark gives up here (a
//! `multiLine` CSV file is one task); DuckDB guesses a start state at each buffer and checks the
//! guess. ubm decides exactly, in two parallel passes over fixed-size chunks:
//!
//! 1. [`summarize`] runs the record scanner over one chunk from each of the four states the
//!    scanner can be in between two bytes ([`ScanState`]), and keeps for each: the state at the
//!    chunk's end, and the first line break that ends a record. It also counts the chunk's line
//!    breaks, which do not depend on the state. A chunk's summary is a few numbers.
//! 2. [`compose`] walks the summaries in file order from the one state known for certain (a
//!    record starts right after the header): each chunk's entry state is the previous chunk's
//!    exit state, which picks its path. The first record end of each chunk's true path is a
//!    split point, and the line breaks counted before it give the line of the record that
//!    starts there.
//!
//! Each range `[split, next split)` then starts at a record and ends right after one, so
//! [`crate::csv::records_from`] reads it exactly as a pass over the whole file would. The four
//! paths cost little more than one: a path that reaches a record end the certain path also
//! reaches is the same path from there on, and the scan stops ([`summarize`]).
//!
//! The scanner's states follow [`crate::csv`]'s reading of RFC 4180: a `"` opens a quoted field
//! only at the start of a field, `""` inside one is a quote, and a line break (`eol`) outside
//! quotes ends the record.

/// Where the record scanner is between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanState {
    /// At the start of a field (of a record, or after a comma): a `"` opens a quoted field.
    FieldStart,
    /// Inside an unquoted field: a `"` is an ordinary character.
    Unquoted,
    /// Inside a quoted field: only a `"` matters.
    Quoted,
    /// Just after a `"` inside a quoted field: a second `"` makes it an escaped quote,
    /// anything else means the field was closed.
    AfterQuote,
}

impl ScanState {
    /// Every state, in the order of [`ChunkSummary::paths`].
    pub const ALL: [ScanState; 4] = [ScanState::FieldStart, ScanState::Unquoted, ScanState::Quoted, ScanState::AfterQuote];

    fn index(self) -> usize {
        match self {
            ScanState::FieldStart => 0,
            ScanState::Unquoted => 1,
            ScanState::Quoted => 2,
            ScanState::AfterQuote => 3,
        }
    }

    /// The state's number as it travels in a summary row.
    pub fn code(self) -> u8 {
        self.index() as u8
    }

    /// The state of a number from [`ScanState::code`].
    pub fn from_code(code: u8) -> Option<ScanState> {
        ScanState::ALL.get(usize::from(code)).copied()
    }
}

/// Runs the scanner over `bytes` from `state`, calling `record_end` with the offset of every
/// `eol` byte that ends a record; `record_end` returns `false` to stop early. Returns the state
/// after the last byte scanned.
pub fn scan(bytes: &[u8], mut state: ScanState, eol: u8, mut record_end: impl FnMut(usize) -> bool) -> ScanState {
    let mut pos = 0;
    loop {
        match state {
            ScanState::Quoted => match memchr::memchr(b'"', &bytes[pos..]) {
                None => return state,
                Some(i) => {
                    pos += i + 1;
                    state = ScanState::AfterQuote;
                }
            },
            // Only a line break or a quote can matter here, so jump from one to the next. A quote
            // opens a field when it follows a comma: the comma put the scanner at a field start.
            // (At the chunk's first byte the entry state says, and it says Unquoted.)
            ScanState::Unquoted => match memchr::memchr2(b'"', eol, &bytes[pos..]) {
                // A comma as the last byte leaves the scanner at a field start.
                None if pos < bytes.len() && bytes[bytes.len() - 1] == b',' => return ScanState::FieldStart,
                None => return state,
                Some(i) => {
                    let at = pos + i;
                    pos = at + 1;
                    if bytes[at] == eol {
                        state = ScanState::FieldStart;
                        if !record_end(at) {
                            return state;
                        }
                    } else if at > 0 && bytes[at - 1] == b',' {
                        state = ScanState::Quoted;
                    }
                }
            },
            ScanState::FieldStart | ScanState::AfterQuote => {
                let Some(&byte) = bytes.get(pos) else { return state };
                let at = pos;
                pos += 1;
                state = match byte {
                    b'"' => ScanState::Quoted, // opens a field, or an escaped quote inside one
                    b',' => ScanState::FieldStart,
                    b if b == eol => {
                        if !record_end(at) {
                            return ScanState::FieldStart;
                        }
                        ScanState::FieldStart
                    }
                    _ => ScanState::Unquoted,
                };
            }
        }
    }
}

/// What the scanner does over one chunk when it enters in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPath {
    /// The state after the chunk's last byte.
    pub exit: ScanState,
    /// File offset of the first line break in the chunk that ends a record.
    pub first_record_end: Option<u64>,
    /// Line breaks from the chunk's start up to and including `first_record_end`.
    pub line_breaks_to_first_end: u64,
}

/// One chunk `[start, end)` of the file, for every state the scanner may enter it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSummary {
    pub start: u64,
    pub end: u64,
    /// The chunk's `eol` bytes: line breaks count whether quoted or not.
    pub line_breaks: u64,
    /// The path for each entry state, in [`ScanState::ALL`]'s order.
    pub paths: [ChunkPath; 4],
}

/// Summarizes `bytes`, the chunk of the file that starts at offset `start`.
pub fn summarize(bytes: &[u8], start: u64, eol: u8) -> ChunkSummary {
    let count = |upto: usize| memchr::memchr_iter(eol, &bytes[..upto]).count() as u64;
    let path = |exit, first: Option<usize>| ChunkPath {
        exit,
        first_record_end: first.map(|at| start + at as u64),
        line_breaks_to_first_end: first.map_or(0, |at| count(at + 1)),
    };
    // Every record end of the path that starts at a field start: another path that meets one
    // of them is at a record start there too, and the same path from then on.
    let mut ends = Vec::new();
    let field_start_exit = scan(bytes, ScanState::FieldStart, eol, |at| {
        ends.push(at);
        true
    });
    let mut paths = [path(field_start_exit, ends.first().copied()); 4];
    for state in &ScanState::ALL[1..] {
        let mut first = None;
        let mut joined = false;
        let exit = scan(bytes, *state, eol, |at| {
            first.get_or_insert(at);
            joined = ends.binary_search(&at).is_ok();
            !joined
        });
        paths[state.index()] = path(if joined { field_start_exit } else { exit }, first);
    }
    ChunkSummary { start, end: start + bytes.len() as u64, line_breaks: count(bytes.len()), paths }
}

/// A byte range of the file that starts at a record and ends right after one (or at the end
/// of the file), with the line the first record starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub start: u64,
    pub end: u64,
    pub line: u64,
}

/// Why summaries cannot be composed: they do not tile the file's records exactly once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record-boundary summaries do not cover bytes {data_start}..{size} exactly once: {reason}")]
pub struct ComposeError {
    pub data_start: u64,
    pub size: u64,
    pub reason: String,
}

/// Composes chunk summaries (any order) of the file's records region `[data_start, size)`, where
/// a record starts on `first_line`, into splits that cover the region in order.
pub fn compose(data_start: u64, size: u64, first_line: u64, summaries: &[ChunkSummary]) -> Result<Vec<Split>, ComposeError> {
    let fail = |reason: String| ComposeError { data_start, size, reason };
    let mut chunks: Vec<&ChunkSummary> = summaries.iter().collect();
    chunks.sort_by_key(|c| c.start);
    let mut points = vec![(data_start, first_line)];
    let mut state = ScanState::FieldStart;
    let mut offset = data_start;
    let mut lines_before = first_line; // the line number at `offset`
    for chunk in chunks {
        if chunk.start != offset || chunk.end < chunk.start {
            return Err(fail(format!("a chunk covers {}..{} where one starting at {offset} was expected", chunk.start, chunk.end)));
        }
        let path = chunk.paths[state.index()];
        if let Some(end) = path.first_record_end {
            let next = end + 1;
            if next < size && next > points.last().map_or(0, |p| p.0) {
                points.push((next, lines_before + path.line_breaks_to_first_end));
            }
        }
        state = path.exit;
        offset = chunk.end;
        lines_before += chunk.line_breaks;
    }
    if offset != size.max(data_start) {
        return Err(fail(format!("the chunks end at {offset}")));
    }
    let mut splits: Vec<Split> = points.windows(2).map(|w| Split { start: w[0].0, end: w[1].0, line: w[0].1 }).collect();
    if let Some(&(start, line)) = points.last().filter(|p| p.0 < size) {
        splits.push(Split { start, end: size, line });
    }
    Ok(splits)
}

/// The chunks `[start, end)` a region is summarized in: `chunk_bytes` each, the last shorter.
pub fn chunks(data_start: u64, size: u64, chunk_bytes: u64) -> Vec<(u64, u64)> {
    let step = chunk_bytes.max(1);
    (data_start..size).step_by(step as usize).map(|start| (start, (start + step).min(size))).collect()
}

/// Cuts `items` (byte ranges, in file order) into at most `groups` runs of consecutive items
/// of about equal bytes, none empty.
pub fn group_ranges<T: Clone>(items: &[T], groups: usize, bytes: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let total: u64 = items.iter().map(&bytes).sum();
    let groups = groups.clamp(1, items.len().max(1));
    let mut out: Vec<Vec<T>> = Vec::with_capacity(groups);
    let mut current = Vec::new();
    let mut done = 0u64;
    for item in items {
        current.push(item.clone());
        done += bytes(item);
        // Close the group once its share of the total is reached.
        let target = total * (out.len() as u64 + 1) / groups as u64;
        if done >= target && out.len() + 1 < groups {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv::{RecordSpan, record_end, record_spans, records_from};

    /// The records of `file` after its header, read through splits of `chunk` bytes.
    fn through_splits(file: &[u8], chunk: u64) -> Vec<RecordSpan> {
        let eol = record_end(file);
        let whole = record_spans(file);
        let Some(header) = whole.first() else { return Vec::new() };
        let mut data_start = None;
        scan(&file[header.start..], ScanState::FieldStart, eol, |at| {
            data_start = Some((header.start + at + 1) as u64);
            false
        });
        let size = file.len() as u64;
        let Some(data_start) = data_start else { return Vec::new() };
        let first_line = 1 + memchr::memchr_iter(eol, &file[..data_start as usize]).count() as u64;
        let mut summaries: Vec<ChunkSummary> =
            chunks(data_start, size, chunk).into_iter().map(|(s, e)| summarize(&file[s as usize..e as usize], s, eol)).collect();
        summaries.reverse(); // tasks finish in any order
        let splits = compose(data_start, size, first_line, &summaries).expect("summaries tile the file");
        let mut records = Vec::new();
        for split in splits {
            let range = &file[split.start as usize..split.end as usize];
            for span in records_from(range, 0, split.line, eol) {
                let shift = split.start as usize;
                records.push(RecordSpan { start: span.start + shift, end: span.end + shift, ..span });
            }
        }
        records
    }

    fn same_records_at_every_chunk_size(file: &[u8]) {
        let whole: Vec<RecordSpan> = record_spans(file).into_iter().skip(1).collect();
        for chunk in 1..=file.len() as u64 + 1 {
            assert_eq!(through_splits(file, chunk), whole, "chunk {chunk} of {:?}", String::from_utf8_lossy(file));
        }
    }

    #[test]
    fn a_quoted_field_that_holds_whole_records_is_one_field() {
        let file = b"cid,review_str,id\n1,\"fine\n2,\"\"good\"\",3\n3,x,4\",5\n6,\"a\"\"\",7\n8,plain \"q\" text,9\n";
        same_records_at_every_chunk_size(file);
        assert_eq!(through_splits(file, 4).iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 5, 6]);
    }

    #[test]
    fn crlf_cr_only_bom_blank_lines_and_an_unclosed_quote() {
        same_records_at_every_chunk_size(b"\xEF\xBB\xBFcid,review_str\r\n1,\"a\r\nb\"\r\n\r\n2,c\r\n");
        same_records_at_every_chunk_size(b"cid,review_str\r1,\"a\rb\"\r\r2,c");
        same_records_at_every_chunk_size(b"cid,review_str\n1,ok\n2,\"never closed\n3,z\n");
        same_records_at_every_chunk_size(b"cid,review_str\n");
        same_records_at_every_chunk_size(b"cid,review_str");
        same_records_at_every_chunk_size(b"cid,review_str\n1,\"\"\"\"\n2,\"\"\n\"3\",x\"\"y\n");
    }

    /// Every file of up to 7 bytes after a header, over the bytes that matter to the scanner.
    #[test]
    fn every_small_file_reads_the_same_through_any_splits() {
        let alphabet = [b'a', b',', b'"', b'\n'];
        for len in 0..=7u32 {
            for mut n in 0..4usize.pow(len) {
                let mut file = b"h,i\n".to_vec();
                for _ in 0..len {
                    file.push(alphabet[n % 4]);
                    n /= 4;
                }
                same_records_at_every_chunk_size(&file);
            }
        }
    }

    #[test]
    fn summaries_that_leave_a_gap_or_overlap_are_refused() {
        let file = b"1,a\n2,b\n3,c\n";
        let s = |from: usize, to: usize| summarize(&file[from..to], from as u64, b'\n');
        assert!(compose(0, 12, 2, &[s(0, 4), s(8, 12)]).is_err(), "a gap");
        assert!(compose(0, 12, 2, &[s(0, 8), s(4, 12)]).is_err(), "an overlap");
        assert!(compose(0, 12, 2, &[s(0, 4), s(4, 8)]).is_err(), "the end missing");
        assert_eq!(compose(0, 12, 2, &[s(4, 8), s(0, 4), s(8, 12)]).map(|v| v.len()), Ok(3));
    }

    #[test]
    fn groups_are_consecutive_and_about_equal() {
        let sizes = [10u64, 10, 10, 10, 10, 10, 10];
        let groups = group_ranges(&sizes, 3, |s| *s);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2, 2]);
        assert_eq!(group_ranges(&sizes, 20, |s| *s).len(), 7);
        assert_eq!(group_ranges::<u64>(&[], 4, |s| *s).len(), 0);
    }
}
