//! Deterministic packaging of a training output: a POSIX ustar archive streamed from the directory (never
//! written in the clear), and its safe unpacking on the customer's side.
//!
//! Determinism: entries in byte order of their relative paths, directories before their contents, mode
//! 0644 (files) / 0755 (directories), uid/gid 0, no user or group names, mtime 0. The same output directory
//! always gives the same bytes, so a re-packaging after a crash is the same plaintext.
//!
//! We write ustar by hand (about a hundred lines) rather than depend on a tar crate: the format subset is
//! tiny, and owning it makes every byte of the plaintext a customer receives reviewable here.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const BLOCK: usize = 512;
/// Largest file ustar's 11 octal digits can describe (8 GiB − 1).
const MAX_ENTRY: u64 = 0o77777777777;

#[derive(Debug, Clone)]
struct Entry {
    rel: String,
    path: PathBuf,
    dir: bool,
    size: u64,
}

/// The files of a directory, checked and ordered for packaging. Refuses links and special files (a trainer
/// must not be able to make the broker package a file outside its output directory), names ustar cannot
/// hold, and files over 8 GiB.
pub fn list_entries(root: &Path) -> Result<Vec<(String, u64)>> {
    Ok(collect(root)?.into_iter().map(|e| (e.rel, e.size)).collect())
}

fn collect(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read output dir", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io("read output dir", dir, e))?;
        let path = e.path();
        // symlink_metadata: a link is reported as a link, never followed.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let rel_path = path.strip_prefix(root).unwrap_or(&path);
        let rel = rel_path
            .to_str()
            .ok_or_else(|| output_err(&path, "a file name is not UTF-8"))?
            .to_owned();
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(Entry {
                rel: format!("{rel}/"),
                path: path.clone(),
                dir: true,
                size: 0,
            });
            walk(root, &path, out)?;
        } else if ft.is_file() {
            if meta.len() > MAX_ENTRY {
                return Err(output_err(&path, "a file is larger than 8 GiB"));
            }
            out.push(Entry {
                rel,
                path,
                dir: false,
                size: meta.len(),
            });
        } else {
            return Err(output_err(&path, "links and special files are not packaged"));
        }
    }
    Ok(())
}

fn output_err(path: &Path, reason: &str) -> Error {
    Error::Training {
        executor: "package",
        reason: format!("{}: {reason}", path.display()),
    }
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn header(e: &Entry) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let name = e.rel.as_bytes();
    // ustar: name (100) or prefix (155) + "/" + name.
    if name.len() <= 100 {
        h[..name.len()].copy_from_slice(name);
    } else {
        let split = (0..name.len())
            .rev()
            .find(|&i| name[i] == b'/' && i <= 155 && name.len() - i - 1 <= 100 && name.len() - i - 1 > 0)
            .ok_or_else(|| output_err(&e.path, "a path is too long for ustar (155 + 100 bytes)"))?;
        h[..name.len() - split - 1].copy_from_slice(&name[split + 1..]);
        h[345..345 + split].copy_from_slice(&name[..split]);
    }
    octal(&mut h[100..108], if e.dir { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], e.size);
    octal(&mut h[136..148], 0);
    h[156] = if e.dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    Ok(h)
}

enum Phase {
    Header,
    Body(File, u64),
    Pad(usize),
    Trailer(usize),
    Done,
}

/// A `Read` producing the ustar archive of a directory on the fly (one file open at a time).
pub struct TarStream {
    entries: std::vec::IntoIter<Entry>,
    current: Option<Entry>,
    phase: Phase,
    buf: Vec<u8>,
    pos: usize,
    total: u64,
}

impl std::fmt::Debug for TarStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarStream")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl TarStream {
    /// Lists and checks `root` (see [`list_entries`]); the bytes come as they are read.
    pub fn new(root: &Path) -> Result<Self> {
        let entries = collect(root)?;
        let total = entries
            .iter()
            .map(|e| BLOCK as u64 + e.size.div_ceil(BLOCK as u64) * BLOCK as u64)
            .sum::<u64>()
            + 2 * BLOCK as u64;
        Ok(Self {
            entries: entries.into_iter(),
            current: None,
            phase: Phase::Header,
            buf: Vec::new(),
            pos: 0,
            total,
        })
    }

    /// Exact size of the archive.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether the archive is empty (never: it always has its trailer).
    pub fn is_empty(&self) -> bool {
        false
    }

    fn advance(&mut self) -> std::io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Header => match self.entries.next() {
                    Some(e) => {
                        let h = header(&e).map_err(std::io::Error::other)?;
                        self.buf.extend_from_slice(&h);
                        self.phase = if e.dir || e.size == 0 {
                            Phase::Header
                        } else {
                            Phase::Body(File::open(&e.path)?, e.size)
                        };
                        self.current = Some(e);
                        return Ok(());
                    }
                    None => self.phase = Phase::Trailer(2 * BLOCK),
                },
                Phase::Body(mut f, left) => {
                    let want = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
                    self.buf.resize(want, 0);
                    let n = f.read(&mut self.buf)?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "a file shrank while it was being packaged",
                        ));
                    }
                    self.buf.truncate(n);
                    let left = left - n as u64;
                    self.phase = if left == 0 {
                        let size = self.current.as_ref().map_or(0, |e| e.size);
                        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
                        Phase::Pad(pad)
                    } else {
                        Phase::Body(f, left)
                    };
                    return Ok(());
                }
                Phase::Pad(n) => {
                    self.phase = Phase::Header;
                    if n > 0 {
                        self.buf.resize(n, 0);
                        return Ok(());
                    }
                }
                Phase::Trailer(n) => {
                    self.buf.resize(n, 0);
                    self.phase = Phase::Done;
                    return Ok(());
                }
                Phase::Done => {
                    self.phase = Phase::Done;
                    return Ok(());
                }
            }
        }
    }
}

impl Read for TarStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            self.advance()?;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Unpacks an archive made by [`TarStream`] (or any plain ustar of files and directories) into `dest`,
/// refusing absolute paths, `..`, links and special entries, and more than `max_bytes` in total. Returns the
/// files written, relative to `dest`.
pub fn unpack(src: &mut impl Read, dest: &Path, max_bytes: u64) -> Result<Vec<String>> {
    let refuse = |name: &str, reason: &str| Error::Archive {
        entry: name.to_owned(),
        reason: reason.to_owned(),
    };
    std::fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, e))?;
    let mut written = Vec::new();
    let mut total = 0u64;
    let mut h = [0u8; BLOCK];
    loop {
        src.read_exact(&mut h)
            .map_err(|e| Error::io("read archive", dest, e))?;
        if h.iter().all(|&b| b == 0) {
            return Ok(written);
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let (name, prefix) = (field(0..100), field(345..500));
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size_s = field(124..136);
        let size = u64::from_str_radix(size_s.trim().trim_end_matches('\0'), 8)
            .map_err(|_| refuse(&name, "size field is not octal"))?;
        let stored: u64 = u64::from_str_radix(field(148..156).trim(), 8)
            .map_err(|_| refuse(&name, "checksum field is not octal"))?;
        let mut hc = h;
        hc[148..156].fill(b' ');
        if hc.iter().map(|&b| u64::from(b)).sum::<u64>() != stored {
            return Err(refuse(&name, "header checksum mismatch"));
        }
        let rel = Path::new(name.trim_end_matches('/'));
        if name.is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refuse(&name, "absolute path or `..` (path traversal)"));
        }
        let out = dest.join(rel);
        match h[156] {
            b'5' => std::fs::create_dir_all(&out).map_err(|e| Error::io("create", &out, e))?,
            b'0' | 0 => {
                total = total.saturating_add(size);
                if total > max_bytes {
                    return Err(refuse(
                        &name,
                        &format!("archive unpacks to more than {max_bytes} bytes"),
                    ));
                }
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
                }
                let mut f = File::create(&out).map_err(|e| Error::io("create", &out, e))?;
                let copied = std::io::copy(&mut (&mut *src).take(size), &mut f)
                    .map_err(|e| Error::io("write", &out, e))?;
                if copied != size {
                    return Err(refuse(&name, "truncated archive"));
                }
                f.flush().map_err(|e| Error::io("write", &out, e))?;
                let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
                std::io::copy(&mut (&mut *src).take(pad), &mut std::io::sink())
                    .map_err(|e| Error::io("read archive", dest, e))?;
                written.push(name.clone());
            }
            _ => return Err(refuse(&name, "links and special entries are not unpacked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_deterministic_and_unpack_to_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("sub/deeper")).unwrap();
        std::fs::write(out.join("b.txt"), b"bee").unwrap();
        std::fs::write(out.join("a.bin"), vec![7u8; 1000]).unwrap();
        std::fs::write(out.join("sub/deeper/empty"), b"").unwrap();
        let long = format!("sub/{}", "n".repeat(90));
        std::fs::write(out.join(&long), b"long name").unwrap();
        let mut a = Vec::new();
        let s = TarStream::new(&out).unwrap();
        let len = s.len();
        { s }.read_to_end(&mut a).unwrap();
        assert_eq!(a.len() as u64, len);
        let mut b = Vec::new();
        TarStream::new(&out).unwrap().read_to_end(&mut b).unwrap();
        assert_eq!(a, b);
        let names: Vec<String> = list_entries(&out).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(names[0], "a.bin");
        assert!(names.iter().position(|n| n == "sub/") < names.iter().position(|n| n == "sub/deeper/"));
        let dest = dir.path().join("dest");
        let files = unpack(&mut a.as_slice(), &dest, 1 << 20).unwrap();
        assert_eq!(files.len(), 4);
        assert_eq!(std::fs::read(dest.join("a.bin")).unwrap(), vec![7u8; 1000]);
        assert_eq!(std::fs::read(dest.join(&long)).unwrap(), b"long name");
        assert!(matches!(
            unpack(&mut a.as_slice(), &dir.path().join("small"), 10),
            Err(Error::Archive { .. })
        ));
    }

    #[test]
    fn links_in_the_output_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("leak")).unwrap();
        let e = TarStream::new(dir.path()).unwrap_err();
        assert!(e.to_string().contains("links"), "{e}");
    }

    #[test]
    fn traversal_entries_are_refused_on_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let e = Entry {
            rel: "../evil".into(),
            path: dir.path().join("x"),
            dir: false,
            size: 0,
        };
        let mut arc = header(&e).unwrap().to_vec();
        arc.extend_from_slice(&[0u8; 1024]);
        let err = unpack(&mut arc.as_slice(), &dir.path().join("d"), 100).unwrap_err();
        assert!(err.to_string().contains("traversal"), "{err}");
        assert!(!dir.path().join("evil").exists());
    }
}
