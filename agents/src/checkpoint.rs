//! Checkpoint files: named f32 tensors in safetensors (readable by Python's `safetensors`)
//! with the learner's metadata in the header, written atomically (temp file in the same
//! directory, fsync, rename, fsync of the directory).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Largest checkpoint we read back (a 64-node learner is well under 1 MB; this only guards
/// against reading a wrong, huge file into memory).
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("checkpoint {path} is incompatible: {reason}")]
    Incompatible { path: PathBuf, reason: String },
}

impl From<CheckpointError> for malcolm_policies::PolicyError {
    fn from(e: CheckpointError) -> Self {
        malcolm_policies::PolicyError::Checkpoint(e.to_string())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` atomically: the bytes go to a temp file next to it, which is fsynced and
/// renamed over `path`, then the directory is fsynced. On any failure the temp file is
/// removed and a previous file at `path` is untouched.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<u64, CheckpointError> {
    atomic_write_with(path, |f| f.write_all(bytes))?;
    Ok(bytes.len() as u64)
}

/// [`atomic_write`] with the content produced by `fill` (a failing `fill` is how tests
/// simulate a crash in the middle of a write).
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), CheckpointError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CheckpointError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        fill(&mut f).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        // The rename is durable only once the directory entry is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A tensor's f32 values and shape.
pub fn tensor_f32(t: &Tensor) -> (Vec<f32>, Vec<usize>) {
    let t = t.to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let n = t.numel();
    let mut data = vec![0f32; n];
    t.copy_data(&mut data, n);
    (data, shape)
}

/// Serialises named tensors and metadata into safetensors bytes.
pub fn encode(
    tensors: &[(String, &Tensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let owned: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (data, shape) = tensor_f32(t);
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (n.clone(), bytes, shape)
        })
        .collect();
    let views = owned
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Encodes `tensors` and `metadata` ([`encode`]) and writes them to `path` atomically
/// ([`atomic_write`]); the returned info names the file, its size and `policy_version`.
pub fn write(
    path: &Path,
    tensors: &[(String, &Tensor)],
    metadata: HashMap<String, String>,
    policy_version: u64,
) -> Result<malcolm_policies::CheckpointInfo, CheckpointError> {
    let bytes = encode(tensors, metadata).map_err(|reason| CheckpointError::Format {
        path: path.into(),
        reason,
    })?;
    let n = atomic_write(path, &bytes)?;
    Ok(malcolm_policies::CheckpointInfo {
        path: path.into(),
        bytes: n,
        policy_version,
    })
}

/// A decoded checkpoint: metadata and f32 tensors by name.
#[derive(Debug)]
pub struct Decoded {
    pub metadata: HashMap<String, String>,
    pub tensors: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

/// Reads and decodes a checkpoint file.
pub fn read(path: &Path) -> Result<Decoded, CheckpointError> {
    let len = fs::metadata(path).map_err(io_err(path))?.len();
    if len > DEFAULT_MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::Format {
            path: path.into(),
            reason: format!("{len} bytes is larger than {DEFAULT_MAX_CHECKPOINT_BYTES}"),
        });
    }
    let bytes = fs::read(path).map_err(io_err(path))?;
    let format = |reason: String| CheckpointError::Format {
        path: path.into(),
        reason,
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format(format!(
                "tensor {name} is {:?}, not F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, (data, view.shape().to_vec()));
    }
    Ok(Decoded { metadata, tensors })
}

/// Copies a decoded tensor into `dst` after checking its shape.
pub fn copy_into(
    path: &Path,
    decoded: &Decoded,
    name: &str,
    dst: &mut Tensor,
) -> Result<(), CheckpointError> {
    let (data, shape) = decoded
        .tensors
        .get(name)
        .ok_or_else(|| CheckpointError::Incompatible {
            path: path.into(),
            reason: format!("tensor {name} is missing"),
        })?;
    let want: Vec<usize> = dst.size().iter().map(|&d| d as usize).collect();
    if *shape != want {
        return Err(CheckpointError::Incompatible {
            path: path.into(),
            reason: format!("tensor {name} has shape {shape:?}, learner has {want:?}"),
        });
    }
    let src = Tensor::from_slice(data).view(dst.size().as_slice());
    tch::no_grad(|| dst.copy_(&src));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_writes_leave_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.safetensors");
        atomic_write(&p, b"first").unwrap();
        // A crash in the middle of writing: half the bytes, then an error.
        let r = atomic_write_with(&p, |f| {
            f.write_all(b"sec")?;
            Err(io::Error::other("simulated crash"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A directory that does not exist: error, nothing created.
        let bad = dir.path().join("missing").join("ckpt.safetensors");
        assert!(atomic_write(&bad, b"x").is_err());
        atomic_write(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
    }

    #[test]
    fn tensors_round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        let bytes = encode(&[("a".into(), &a)], meta).unwrap();
        atomic_write(&p, &bytes).unwrap();
        let d = read(&p).unwrap();
        assert_eq!(d.metadata["k"], "v");
        let mut dst = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
        copy_into(&p, &d, "a", &mut dst).unwrap();
        assert_eq!(dst.double_value(&[1, 2]), 6.0);
        let mut wrong = Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu));
        assert!(matches!(
            copy_into(&p, &d, "a", &mut wrong),
            Err(CheckpointError::Incompatible { .. })
        ));
    }
}
