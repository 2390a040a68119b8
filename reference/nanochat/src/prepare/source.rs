//! Data sources other than the synthetic grammar: local files and directories, and downloads
//! by URL with retries, backoff and an on-disk cache.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a run's text comes from, as named by `--data` or `NANOCHAT_DATA`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// `synthetic`: stories from the built-in grammar, with an exact entropy floor.
    Synthetic,
    /// `path:/some/file.txt` or `path:/some/dir` (every non-hidden file under it, by path order).
    Path(PathBuf),
    /// `url:https://...`: downloaded once, then read from the cache.
    Url(String),
}

impl DataSource {
    pub fn parse(spec: &str) -> Result<DataSource, String> {
        if spec == "synthetic" {
            Ok(DataSource::Synthetic)
        } else if let Some(path) = spec.strip_prefix("path:") {
            Ok(DataSource::Path(PathBuf::from(path)))
        } else if let Some(url) = spec.strip_prefix("url:") {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(DataSource::Url(url.to_string()))
            } else {
                Err(format!(
                    "data url `{url}` must start with http:// or https://"
                ))
            }
        } else {
            Err(format!(
                "unknown data source `{spec}`; use `synthetic`, `path:FILE_OR_DIR` or `url:URL`"
            ))
        }
    }
}

/// Why data could not be loaded.
#[derive(Debug)]
pub enum DataError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    Empty {
        path: PathBuf,
    },
    TooSmall {
        bytes: usize,
        minimum: usize,
    },
    Download {
        url: String,
        attempts: u32,
        last_error: String,
    },
}

impl DataError {
    pub fn io(path: &Path, error: io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, error } => write!(f, "cannot read `{}`: {error}", path.display()),
            DataError::Empty { path } => write!(f, "no data in `{}`", path.display()),
            DataError::TooSmall { bytes, minimum } => write!(
                f,
                "the text has {bytes} bytes; at least {minimum} are needed for training and validation"
            ),
            DataError::Download {
                url,
                attempts,
                last_error,
            } => write!(
                f,
                "download of `{url}` failed after {attempts} attempts; last error: {last_error}"
            ),
        }
    }
}

impl std::error::Error for DataError {}

/// The bytes of a file, or of every non-hidden file under a directory, in path order.
pub fn read_path(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    let mut bytes = Vec::new();
    for file in &files {
        let mut content = std::fs::read(file).map_err(|e| DataError::io(file, e))?;
        // Files are joined on a line break so that one file's last line never runs into the
        // next file's first.
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        bytes.append(&mut content);
    }
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let metadata = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if metadata.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(|e| DataError::io(path, e))? {
        let entry = entry.map_err(|e| DataError::io(path, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        collect_files(&entry.path(), files)?;
    }
    Ok(())
}

/// The download cache: `NANOCHAT_DATA_DIR`, else `$XDG_CACHE_HOME/arun-nanochat`, else
/// `~/.cache/arun-nanochat`.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("NANOCHAT_DATA_DIR") {
        PathBuf::from(dir)
    } else if let Some(cache) = var("XDG_CACHE_HOME") {
        PathBuf::from(cache).join("arun-nanochat")
    } else if let Some(home) = var("HOME") {
        PathBuf::from(home).join(".cache").join("arun-nanochat")
    } else {
        std::env::temp_dir().join("arun-nanochat")
    }
}

/// Downloads `url` into `cache` unless it is already there; returns the cached file.
///
/// Up to `attempts` tries, waiting `first_backoff`, then twice that, and so on between them.
/// Client errors other than 408 and 429 are not retried: asking again will not help. The
/// file appears under its final name only once complete, so an interrupted download is never
/// mistaken for a cached one.
pub fn download_cached(
    url: &str,
    cache: &Path,
    attempts: u32,
    first_backoff: Duration,
) -> Result<PathBuf, DataError> {
    let path = cache.join(cache_file_name(url));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache).map_err(|e| DataError::io(cache, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            let wait = first_backoff * 2u32.pow(attempt - 2);
            eprintln!("retrying in {wait:?} (attempt {attempt} of {attempts}): {last_error}");
            std::thread::sleep(wait);
        }
        match download_once(&agent, url, &path) {
            Ok(()) => return Ok(path),
            Err(DownloadFailure::Final(message)) => {
                return Err(DataError::Download {
                    url: url.to_string(),
                    attempts: attempt,
                    last_error: message,
                });
            }
            Err(DownloadFailure::Retryable(message)) => last_error = message,
        }
    }
    Err(DataError::Download {
        url: url.to_string(),
        attempts,
        last_error,
    })
}

enum DownloadFailure {
    Retryable(String),
    Final(String),
}

fn download_once(agent: &ureq::Agent, url: &str, path: &Path) -> Result<(), DownloadFailure> {
    let response = agent.get(url).call().map_err(|error| match error {
        ureq::Error::StatusCode(code)
            if (400..500).contains(&code) && code != 408 && code != 429 =>
        {
            DownloadFailure::Final(format!("HTTP status {code}"))
        }
        other => DownloadFailure::Retryable(other.to_string()),
    })?;
    let partial = path.with_extension("partial");
    let result = (|| -> io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        io::copy(&mut response.into_body().into_reader(), &mut file)?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        DownloadFailure::Retryable(e.to_string())
    })
}

/// A file name that is readable (the URL's last segment) and unique (a hash of the whole URL).
fn cache_file_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("data")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect::<String>();
    // FNV-1a: stable across Rust versions, unlike the standard library's hasher.
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}-{last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A one-thread HTTP server: answers the first `failures` requests with 503, then serves
    /// `body`. Returns its URL and the request counter.
    fn flaky_server(failures: usize, body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/shakespeare/input.txt",
            listener.local_addr().unwrap()
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                // Read the request head up to its blank line.
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let response = if n < failures {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                } else {
                    let mut ok = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    ok.extend_from_slice(body);
                    ok
                };
                stream.write_all(&response).unwrap();
            }
        });
        (url, requests)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nanochat-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn download_retries_then_caches() {
        let (url, requests) = flaky_server(2, b"First Citizen:\nBefore we proceed any further.\n");
        let cache = temp_dir("download");
        let path = download_cached(&url, &cache, 4, Duration::from_millis(10)).unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"First Citizen:\nBefore we proceed any further.\n"
        );
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("-input.txt")
        );
        // The second call is served from the cache without a request.
        let again = download_cached(&url, &cache, 4, Duration::from_millis(10)).unwrap();
        assert_eq!(again, path);
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn download_gives_up_after_its_attempts() {
        let (url, requests) = flaky_server(usize::MAX, b"");
        let cache = temp_dir("give-up");
        let error = download_cached(&url, &cache, 3, Duration::from_millis(10)).unwrap_err();
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        assert!(error.to_string().contains("after 3 attempts"), "{error}");
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            0,
            "nothing cached"
        );
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_directory_is_read_in_path_order_without_hidden_files() {
        let dir = temp_dir("dir");
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("b/two.txt"), "two").unwrap();
        std::fs::write(dir.join("a.txt"), "one").unwrap();
        std::fs::write(dir.join(".hidden"), "secret").unwrap();
        assert_eq!(read_path(&dir).unwrap(), b"one\ntwo");
        assert_eq!(read_path(&dir.join("a.txt")).unwrap(), b"one");
        assert!(read_path(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn data_specs_parse() {
        assert_eq!(
            DataSource::parse("synthetic").unwrap(),
            DataSource::Synthetic
        );
        assert_eq!(
            DataSource::parse("url:https://example.com/x.txt").unwrap(),
            DataSource::Url("https://example.com/x.txt".into())
        );
        assert!(DataSource::parse("url:ftp://example.com").is_err());
        assert!(DataSource::parse("shakespeare").is_err());
    }
}
