//! 0G's sealed-file format, streamed with one chunk of memory.
//!
//! ```text
//! [65-byte tag signature][12-byte IV][ct_0 ‖ tag_0][ct_1 ‖ tag_1]…     ct_i = AES-256-GCM(chunk_i), 64 MiB chunks
//! ```
//! * chunk `i` is encrypted under `IV + i`, the IV read as a 96-bit big-endian counter that wraps (the loop
//!   in 0G's `aesGCMDecryptToFile`, `src.ts/sdk/common/utils/encrypt.ts`, compute SDK 0.9.0);
//! * the signature is a raw secp256k1 signature `r ‖ s ‖ v` over `keccak256(tag_0 ‖ tag_1 ‖ …)` with no
//!   EIP-191 prefix (`ethers.recoverAddress(keccak256(tags), sig)` there); we write `v` as 27/28 and accept
//!   0/1 or 27/28, as ethers does;
//! * an empty plaintext has no chunks; its signature covers `keccak256("")`.

use crate::error::{Error, Result};
use crate::key::SealingKey;
use alloy_primitives::{Address, B256, Keccak256, keccak256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of the tag signature at the start of a sealed file.
pub const SIG_LEN: usize = 65;
/// Bytes of the initial IV after the signature.
pub const IV_LEN: usize = 12;
/// Bytes of each chunk's GCM tag.
pub const TAG_LEN: usize = 16;
/// Header bytes: signature + IV.
pub const HEADER_LEN: usize = SIG_LEN + IV_LEN;
/// Plaintext bytes per chunk in 0G's format (64 MiB).
pub const CHUNK_SIZE: usize = 64 * 1024 * 1024;

/// Adds one to a 96-bit big-endian counter, wrapping to zero (0G increments the last byte and carries).
pub fn increment_iv(iv: &mut [u8; IV_LEN]) {
    for b in iv.iter_mut().rev() {
        *b = b.wrapping_add(1);
        if *b != 0 {
            break;
        }
    }
}

/// The Ethereum address of a secp256k1 verifying key.
pub fn signer_address(key: &VerifyingKey) -> Address {
    let p = key.to_encoded_point(false);
    let h = keccak256(p.as_bytes().get(1..).unwrap_or_default());
    Address::from_slice(h.get(12..).unwrap_or(&[0u8; 20]))
}

fn sign_tags(signer: &SigningKey, tags_hash: &B256) -> Result<[u8; SIG_LEN]> {
    let (sig, recid) = signer
        .sign_prehash_recoverable(tags_hash.as_slice())
        .map_err(|_| Error::MalformedSignature("signing failed"))?;
    let mut out = [0u8; SIG_LEN];
    let (rs, v) = out.split_at_mut(64);
    rs.copy_from_slice(&sig.to_bytes());
    if let Some(v) = v.first_mut() {
        *v = recid.to_byte().wrapping_add(27);
    }
    Ok(out)
}

/// Recovers the address that produced `sig` over `tags_hash`.
pub fn recover_tag_signer(tags_hash: &B256, sig: &[u8; SIG_LEN]) -> Result<Address> {
    let (rs, v) = sig.split_at(64);
    let v = v.first().copied().unwrap_or_default();
    let v = match v {
        0 | 1 => v,
        27 | 28 => v.wrapping_sub(27),
        _ => {
            return Err(Error::MalformedSignature(
                "recovery byte v must be 0, 1, 27 or 28",
            ));
        }
    };
    let recid = RecoveryId::from_byte(v).ok_or(Error::MalformedSignature("bad recovery id"))?;
    let sig = Signature::from_slice(rs).map_err(|_| Error::MalformedSignature("r or s out of range"))?;
    let key = VerifyingKey::recover_from_prehash(tags_hash.as_slice(), &sig, recid)
        .map_err(|_| Error::MalformedSignature("no public key recovers from this signature"))?;
    Ok(signer_address(&key))
}

fn cipher(key: &SealingKey) -> Result<LessSafeKey> {
    // A 32-byte key is always valid for AES-256-GCM; the error arm is unreachable but typed anyway.
    UnboundKey::new(&AES_256_GCM, key.bytes())
        .map(LessSafeKey::new)
        .map_err(|_| Error::ChunkSize { size: 0 })
}

fn check_chunk_size(size: usize) -> Result<usize> {
    if size == 0 || size > (1usize << 32) {
        Err(Error::ChunkSize { size })
    } else {
        Ok(size)
    }
}

/// Where each chunk of a sealed body sits: `(count, last_ct_len)`; all chunks but the last have
/// `chunk_size` bytes of ciphertext.
fn chunk_plan(sealed_len: u64, chunk_size: usize) -> Result<Vec<(u64, usize)>> {
    let header = HEADER_LEN as u64;
    let body = sealed_len
        .checked_sub(header)
        .ok_or(Error::TruncatedHeader { len: sealed_len })?;
    let full = (chunk_size as u64).saturating_add(TAG_LEN as u64);
    let mut plan = Vec::new();
    let mut offset = header;
    let mut left = body;
    while left > 0 {
        let take = left.min(full);
        if take < TAG_LEN as u64 {
            return Err(Error::TruncatedChunk { len: take });
        }
        // take - TAG_LEN <= chunk_size, which fits in usize.
        plan.push((
            offset,
            usize::try_from(take.saturating_sub(TAG_LEN as u64)).unwrap_or(chunk_size),
        ));
        offset = offset.saturating_add(take);
        left = left.saturating_sub(take);
    }
    Ok(plan)
}

fn tmp_next_to(out: &Path) -> PathBuf {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.part", std::process::id()))
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0usize;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What a seal produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealSummary {
    /// Plaintext bytes.
    pub plaintext_len: u64,
    /// Sealed bytes (header + chunks + tags).
    pub sealed_len: u64,
    /// Chunks written.
    pub chunks: u64,
    /// The address whose signature covers the tags.
    pub signer: Address,
}

/// Encrypts and signs files in 0G's sealed format.
///
/// ```
/// use zg_sealing::{Sealer, SealingKey, Unsealer, signer_address};
/// let key = SealingKey::generate()?;
/// let tee = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
/// let sealed = Sealer::new(&key).seal_bytes(&tee, b"model weights")?;
/// let plain = Unsealer::new(&key, signer_address(tee.verifying_key())).unseal_bytes(&sealed)?;
/// assert_eq!(plain, b"model weights");
/// # Ok::<(), zg_sealing::Error>(())
/// ```
#[derive(Debug)]
pub struct Sealer<'k> {
    key: &'k SealingKey,
    chunk_size: usize,
    iv: Option<[u8; IV_LEN]>,
}

impl<'k> Sealer<'k> {
    /// 64 MiB chunks and a random initial IV.
    pub fn new(key: &'k SealingKey) -> Self {
        Self {
            key,
            chunk_size: CHUNK_SIZE,
            iv: None,
        }
    }

    /// Another chunk size. Only [`CHUNK_SIZE`] interoperates with 0G's tools; others are for tests.
    pub fn chunk_size(mut self, size: usize) -> Result<Self> {
        self.chunk_size = check_chunk_size(size)?;
        Ok(self)
    }

    /// A fixed initial IV (tests, reproducible vectors). The default is random, and a key must never be
    /// reused with the same IV.
    pub fn iv(mut self, iv: [u8; IV_LEN]) -> Self {
        self.iv = Some(iv);
        self
    }

    fn initial_iv(&self) -> Result<[u8; IV_LEN]> {
        match self.iv {
            Some(iv) => Ok(iv),
            None => {
                let mut iv = [0u8; IV_LEN];
                rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut iv)
                    .map_err(|e| Error::Rng(e.to_string()))?;
                Ok(iv)
            }
        }
    }

    /// Seals in memory.
    pub fn seal_bytes(&self, signer: &SigningKey, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(HEADER_LEN).saturating_add(TAG_LEN));
        self.seal_stream(
            signer,
            &mut &plaintext[..],
            &mut std::io::Cursor::new(&mut out),
            Path::new("<memory>"),
        )?;
        Ok(out)
    }

    /// Seals `input` into `output`, streaming one chunk at a time. `output` appears only when complete
    /// (written to a temp file next to it, fsynced, renamed).
    pub fn seal_file(&self, signer: &SigningKey, input: &Path, output: &Path) -> Result<SealSummary> {
        let mut src = File::open(input).map_err(|e| Error::io(input, e))?;
        self.seal_reader_named(signer, &mut src, input, output)
    }

    /// Seals everything `src` yields into `output`, one chunk in memory at a time: for plaintext produced on
    /// the fly (an archive streamed from a directory) that never touches the disk in the clear. `output`
    /// appears only when complete (temp file, fsync, rename).
    pub fn seal_reader(
        &self,
        signer: &SigningKey,
        src: &mut impl Read,
        output: &Path,
    ) -> Result<SealSummary> {
        self.seal_reader_named(signer, src, Path::new("<reader>"), output)
    }

    fn seal_reader_named(
        &self,
        signer: &SigningKey,
        src: &mut impl Read,
        src_name: &Path,
        output: &Path,
    ) -> Result<SealSummary> {
        let tmp = tmp_next_to(output);
        let res = (|| {
            let mut dst = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let summary = self.seal_stream(signer, src, &mut dst, src_name)?;
            dst.sync_all().map_err(|e| Error::io(&tmp, e))?;
            drop(dst);
            fs::rename(&tmp, output).map_err(|e| Error::io(output, e))?;
            Ok(summary)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn seal_stream<W: Write + Seek>(
        &self,
        signer: &SigningKey,
        src: &mut impl Read,
        dst: &mut W,
        src_name: &Path,
    ) -> Result<SealSummary> {
        let out_err = |e| Error::io("<sealed output>", e);
        let cipher = cipher(self.key)?;
        let mut iv = self.initial_iv()?;
        dst.write_all(&[0u8; SIG_LEN]).map_err(out_err)?;
        dst.write_all(&iv).map_err(out_err)?;
        let mut buf = vec![0u8; self.chunk_size];
        let mut tags = Keccak256::new();
        let (mut chunks, mut plain, mut sealed) = (0u64, 0u64, HEADER_LEN as u64);
        loop {
            let n = read_up_to(src, &mut buf).map_err(|e| Error::io(src_name, e))?;
            if n == 0 {
                break;
            }
            let chunk = buf.get_mut(..n).unwrap_or_default();
            // Each IV is used once per key: a fresh counter value per chunk, and a fresh key per task.
            let tag = cipher
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), chunk)
                .map_err(|_| Error::ChunkSize { size: n })?;
            dst.write_all(chunk).map_err(out_err)?;
            dst.write_all(tag.as_ref()).map_err(out_err)?;
            tags.update(tag.as_ref());
            increment_iv(&mut iv);
            chunks = chunks.saturating_add(1);
            plain = plain.saturating_add(n as u64);
            sealed = sealed.saturating_add(n as u64).saturating_add(TAG_LEN as u64);
            if n < self.chunk_size {
                break;
            }
        }
        let sig = sign_tags(signer, &tags.finalize())?;
        dst.seek(SeekFrom::Start(0)).map_err(out_err)?;
        dst.write_all(&sig).map_err(out_err)?;
        dst.seek(SeekFrom::End(0)).map_err(out_err)?;
        Ok(SealSummary {
            plaintext_len: plain,
            sealed_len: sealed,
            chunks,
            signer: signer_address(signer.verifying_key()),
        })
    }
}

/// What an unseal produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsealSummary {
    /// Plaintext bytes written.
    pub plaintext_len: u64,
    /// Chunks decrypted.
    pub chunks: u64,
    /// The verified signer.
    pub signer: Address,
}

/// Verifies and decrypts sealed files.
///
/// The tag signature is checked against `expected_signer` first (reading only the tags), so a file from
/// the wrong signer fails before any decryption; the plaintext goes to a temp file renamed over `output`
/// only when every chunk authenticated and the tags were unchanged. On any error nothing is left at
/// `output`.
#[derive(Debug)]
pub struct Unsealer<'k> {
    key: &'k SealingKey,
    expected_signer: Address,
    chunk_size: usize,
}

impl<'k> Unsealer<'k> {
    /// Unseals files whose tags `expected_signer` (the provider's TEE signer) signed.
    pub fn new(key: &'k SealingKey, expected_signer: Address) -> Self {
        Self {
            key,
            expected_signer,
            chunk_size: CHUNK_SIZE,
        }
    }

    /// Another chunk size (must match the sealer's; 0G uses [`CHUNK_SIZE`]).
    pub fn chunk_size(mut self, size: usize) -> Result<Self> {
        self.chunk_size = check_chunk_size(size)?;
        Ok(self)
    }

    /// Unseals in memory.
    pub fn unseal_bytes(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(sealed.len());
        self.unseal_stream(
            &mut std::io::Cursor::new(sealed),
            sealed.len() as u64,
            &mut out,
            Path::new("<memory>"),
        )?;
        Ok(out)
    }

    /// Unseals `input` into `output`.
    pub fn unseal_file(&self, input: &Path, output: &Path) -> Result<UnsealSummary> {
        let mut src = File::open(input).map_err(|e| Error::io(input, e))?;
        let len = src.metadata().map_err(|e| Error::io(input, e))?.len();
        let tmp = tmp_next_to(output);
        let res = (|| {
            let mut dst = std::io::BufWriter::with_capacity(
                1 << 20,
                File::create(&tmp).map_err(|e| Error::io(&tmp, e))?,
            );
            let summary = self.unseal_stream(&mut src, len, &mut dst, input)?;
            let dst = dst.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
            dst.sync_all().map_err(|e| Error::io(&tmp, e))?;
            drop(dst);
            fs::rename(&tmp, output).map_err(|e| Error::io(output, e))?;
            Ok(summary)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Checks only the tag signature (no key needed, nothing decrypted); returns the signer.
    pub fn verify_signature<R: Read + Seek>(&self, src: &mut R, len: u64) -> Result<Address> {
        let (sig, _, plan) = read_header(src, len, self.chunk_size)?;
        let mut tags = Keccak256::new();
        let mut tag = [0u8; TAG_LEN];
        for (offset, ct_len) in &plan {
            src.seek(SeekFrom::Start(offset.saturating_add(*ct_len as u64)))
                .map_err(|e| Error::io("<sealed>", e))?;
            src.read_exact(&mut tag).map_err(|e| Error::io("<sealed>", e))?;
            tags.update(tag);
        }
        let recovered = recover_tag_signer(&tags.finalize(), &sig)?;
        if recovered != self.expected_signer {
            return Err(Error::WrongSigner {
                expected: self.expected_signer,
                recovered,
            });
        }
        Ok(recovered)
    }

    fn unseal_stream<R: Read + Seek>(
        &self,
        src: &mut R,
        len: u64,
        dst: &mut impl Write,
        name: &Path,
    ) -> Result<UnsealSummary> {
        let signer = self.verify_signature(src, len)?;
        let (sig, mut iv, plan) = read_header(src, len, self.chunk_size)?;
        src.seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(|e| Error::io(name, e))?;
        let cipher = cipher(self.key)?;
        let mut buf = vec![0u8; plan.first().map_or(0, |(_, l)| *l).saturating_add(TAG_LEN)];
        let mut tags = Keccak256::new();
        let mut plain = 0u64;
        for (index, (_, ct_len)) in plan.iter().enumerate() {
            let piece = buf
                .get_mut(..ct_len.saturating_add(TAG_LEN))
                .ok_or(Error::Changed)?;
            src.read_exact(piece).map_err(|e| Error::io(name, e))?;
            let (ct, tag) = piece.split_at_mut(*ct_len);
            tags.update(&*tag);
            let tag = Tag::try_from(&*tag).map_err(|_| Error::ChunkAuth { index: index as u64 })?;
            let opened = cipher
                .open_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), tag, ct, 0..)
                .map_err(|_| Error::ChunkAuth { index: index as u64 })?;
            dst.write_all(opened)
                .map_err(|e| Error::io("<plaintext output>", e))?;
            increment_iv(&mut iv);
            plain = plain.saturating_add(*ct_len as u64);
        }
        // The tags we decrypted under must be the ones the signature covered.
        if recover_tag_signer(&tags.finalize(), &sig)? != signer {
            return Err(Error::Changed);
        }
        Ok(UnsealSummary {
            plaintext_len: plain,
            chunks: plan.len() as u64,
            signer,
        })
    }
}

/// Signature, initial IV, and `(offset, ciphertext length)` of each chunk.
type Header = ([u8; SIG_LEN], [u8; IV_LEN], Vec<(u64, usize)>);

fn read_header<R: Read + Seek>(src: &mut R, len: u64, chunk_size: usize) -> Result<Header> {
    let plan = chunk_plan(len, chunk_size)?;
    let mut sig = [0u8; SIG_LEN];
    let mut iv = [0u8; IV_LEN];
    src.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("<sealed>", e))?;
    src.read_exact(&mut sig).map_err(|e| Error::io("<sealed>", e))?;
    src.read_exact(&mut iv).map_err(|e| Error::io("<sealed>", e))?;
    Ok((sig, iv, plan))
}
