//! SHA-256 of a file, as `sha256sum` prints it: for backups, staged releases and uploads.

use std::fs::File;
use std::io::{BufReader, Read as _};

use anyhow::{Context as _, Result};
use camino::Utf8Path;
use sha2::{Digest as _, Sha256};

/// The lowercase hex SHA-256 of `file`'s contents.
pub(crate) fn sha256(file: &Utf8Path) -> Result<String> {
    let mut reader = BufReader::new(File::open(file).with_context(|| format!("opening {file}"))?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = reader.read(&mut buffer).with_context(|| format!("reading {file}"))?;
        if read == 0 {
            return Ok(format!("{:x}", hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_one_sha256sum_prints() {
        let dir = camino::Utf8PathBuf::try_from(std::env::temp_dir()).expect("utf-8");
        let file = dir.join(format!("checksum-{}", std::process::id()));
        std::fs::write(&file, "abc").expect("write");
        let digest = sha256(&file).expect("hash");
        let _ = std::fs::remove_file(&file);
        assert_eq!(digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
