//! Sealed fine-tuning deliverables: 0G's chunked AES-256-GCM file format and ECIES key wrap.
