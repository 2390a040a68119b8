//! Reads a growing log file as it is written and hands out complete lines, in bounded memory:
//! a line longer than `MAX_LINE` is cut, so a log without newlines costs no more than any other.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Longest line handed out; the rest of a longer line is skipped.
pub const MAX_LINE: usize = 64 * 1024;
const CHUNK: usize = 64 * 1024;

pub struct LogTail {
    file: File,
    partial: Vec<u8>,
    /// The current line passed `MAX_LINE`; skip until its end.
    skipping: bool,
    buffer: Vec<u8>,
}

impl LogTail {
    pub fn open(path: &Path) -> io::Result<LogTail> {
        Ok(LogTail {
            file: File::open(path)?,
            partial: Vec::new(),
            skipping: false,
            buffer: vec![0; CHUNK],
        })
    }

    /// Reads what was written since the last call and calls `on_line` for each complete line.
    /// Both `\n` and `\r` end a line, so progress bars drawn with `\r` are seen line by line.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str)) -> io::Result<()> {
        loop {
            let read = self.file.read(&mut self.buffer)?;
            if read == 0 {
                return Ok(());
            }
            for &byte in &self.buffer[..read] {
                if byte == b'\n' || byte == b'\r' {
                    if !self.skipping {
                        on_line(&String::from_utf8_lossy(&self.partial));
                    }
                    self.partial.clear();
                    self.skipping = false;
                } else if !self.skipping {
                    self.partial.push(byte);
                    if self.partial.len() >= MAX_LINE {
                        on_line(&String::from_utf8_lossy(&self.partial));
                        self.partial.clear();
                        self.skipping = true;
                    }
                }
            }
        }
    }

    /// Hands out the last line when the output did not end with a newline.
    pub fn finish(&mut self, on_line: &mut dyn FnMut(&str)) {
        if !self.partial.is_empty() && !self.skipping {
            on_line(&String::from_utf8_lossy(&self.partial));
        }
        self.partial.clear();
    }
}

/// The last `max_bytes` of a file as clean text for a prompt: ANSI escapes removed, `\r`
/// progress redraws collapsed to their final state, at most `max_lines` lines.
pub fn clean_tail(path: &Path, max_bytes: u64, max_lines: usize) -> io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let start = size.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            // A line redrawn with \r shows only what was drawn last.
            let last = line
                .trim_end_matches('\r')
                .rsplit('\r')
                .next()
                .unwrap_or("");
            // Other control characters (bells, backspaces) mean nothing in a prompt.
            crate::text::strip_ansi(last)
                .chars()
                .filter(|&c| c == '\t' || !c.is_control())
                .collect::<String>()
        })
        .collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // cut mid-line
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let skip = lines.len().saturating_sub(max_lines);
    Ok(lines[skip..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut writer = File::create(&path).unwrap();
        let mut tail = LogTail::open(&path).unwrap();
        let mut seen = Vec::new();
        for chunk in chunks {
            writer.write_all(chunk).unwrap();
            writer.flush().unwrap();
            tail.poll(&mut |line| seen.push(line.to_string())).unwrap();
        }
        tail.finish(&mut |line| seen.push(line.to_string()));
        seen
    }

    #[test]
    fn lines_split_across_writes_come_out_whole() {
        let seen = lines_of(&[b"val_b", b"pb: 0.99\nstep 1\rstep 2\r", b"tail"]);
        assert_eq!(seen, ["val_bpb: 0.99", "step 1", "step 2", "tail"]);
    }

    #[test]
    fn overlong_lines_are_cut_and_the_rest_skipped() {
        let long = vec![b'x'; MAX_LINE * 3];
        let seen = lines_of(&[&long, b"\nnext\n"]);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].len(), MAX_LINE);
        assert_eq!(seen[1], "next");
    }

    #[test]
    fn clean_tail_strips_colour_and_progress_redraws() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            "first\n\x1b[31merror\x1b[0m here\x07\nstep 1\rstep 2\rstep 3\nlast\n",
        )
        .unwrap();
        let tail = clean_tail(&path, 1 << 20, 10).unwrap();
        assert_eq!(tail, "first\nerror here\nstep 3\nlast");
        let tail = clean_tail(&path, 1 << 20, 2).unwrap();
        assert_eq!(tail, "step 3\nlast");
        let tail = clean_tail(&path, 10, 10).unwrap();
        assert_eq!(tail, "last");
    }
}
