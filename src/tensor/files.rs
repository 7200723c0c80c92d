//! Files: weights in safetensors (by parameter name, stored as f32) and arrays in .npy/.npz. Every write goes
//! to a temporary file that is renamed into place, so a failure never leaves a half-written file.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::{NpzWriter, ReadNpyExt, WriteNpyExt};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};

use super::{Params, Tensor, Weights};
use crate::ir::Graph;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid {format} file: {reason}")]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("`{path}` does not fit the model:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Mismatch {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// What a weights file may lack or have in excess.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Parameters missing from the file are reported back instead of refused (the caller initializes them).
    pub allow_missing: bool,
    /// Tensors the model does not have are ignored instead of refused.
    pub allow_extra: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let err = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// The error for a safetensors file that cannot be decoded.
fn corrupt_safetensors(path: &Path) -> impl Fn(String) -> FileError + '_ {
    move |reason| FileError::Corrupt {
        path: path.to_path_buf(),
        format: "safetensors",
        reason,
    }
}

/// The longest safetensors header accepted (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// A safetensors file opened to read one tensor at a time: the header is read and checked against the
/// model when the file is opened, and each tensor's bytes only when asked for. The JIT packs weights from
/// it without holding the whole file (ResNet-50's checkpoint is 98 MiB of f32, and was 195 MiB as f64).
pub struct WeightFile {
    path: PathBuf,
    /// Read with seek and read, one tensor at a time.
    file: std::sync::Mutex<std::fs::File>,
    /// Where the data section starts.
    data: u64,
    /// The model's parameters the file has (checked: float type, the model's shape).
    tensors: BTreeMap<String, TensorInfo>,
    /// Values for parameters the file lacks, given by [`WeightFile::fill`].
    filled: Weights,
}

impl WeightFile {
    /// Opens `path` and checks its tensors' names, shapes and types against the parameters of `g`. Returns
    /// the file and the names of the parameters it lacks (only with `allow_missing`; give their values
    /// with [`WeightFile::fill`]). PyTorch's int64 `num_batches_tracked` entries are accepted and ignored.
    pub fn open(
        path: &Path,
        g: &Graph,
        options: LoadOptions,
    ) -> Result<(WeightFile, Vec<String>), FileError> {
        let read_err = |source| FileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = corrupt_safetensors(path);
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let mut head = [0u8; 8];
        if len < 8 {
            return Err(corrupt(format!("{len} bytes is shorter than a header")));
        }
        file.read_exact(&mut head).map_err(read_err)?;
        let n = u64::from_le_bytes(head);
        if n > MAX_HEADER || n > len - 8 {
            return Err(corrupt(format!(
                "the header declares {n} bytes, the file has {len}"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).map_err(read_err)?;
        let meta: Metadata =
            serde_json::from_slice(&header).map_err(|e| corrupt(format!("header: {e}")))?;
        let data = 8 + n;
        if data + meta.data_len() as u64 != len {
            return Err(corrupt(format!(
                "the header declares {} bytes of data, the file has {}",
                meta.data_len(),
                len - data
            )));
        }
        let all = meta.tensors();
        let expected = parameters(g);
        let mut problems = Vec::new();
        let mut tensors = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, shape) in &expected {
            let Some(&info) = all.get(name) else {
                missing.push(name.clone());
                continue;
            };
            if info.shape != *shape {
                problems.push(format!(
                    "`{name}` has shape {:?}, the model expects {shape:?}",
                    info.shape
                ));
            } else if decode(info.dtype, &[], |v| v).is_none() {
                // (Decoding nothing fails exactly for the types that are not floats.)
                problems.push(format!(
                    "`{name}` has element type {:?}; expected a float type",
                    info.dtype
                ));
            } else {
                tensors.insert(name.clone(), info.clone());
            }
        }
        if !options.allow_missing {
            problems.extend(
                missing
                    .iter()
                    .map(|m| format!("`{m}` is missing (pass --allow-missing to initialize it)")),
            );
        }
        if !options.allow_extra {
            let known: std::collections::HashSet<&str> =
                expected.iter().map(|(n, _)| n.as_str()).collect();
            let mut extra: Vec<&String> = all
                .keys()
                .filter(|n| !known.contains(n.as_str()) && !n.ends_with("num_batches_tracked"))
                .collect();
            extra.sort();
            problems.extend(extra.iter().map(|e| {
                format!("`{e}` is not a parameter of this model (pass --allow-extra to ignore it)")
            }));
        }
        if !problems.is_empty() {
            return Err(FileError::Mismatch {
                path: path.to_path_buf(),
                problems,
            });
        }
        let file = WeightFile {
            path: path.to_path_buf(),
            file: std::sync::Mutex::new(file),
            data,
            tensors,
            filled: Weights::new(),
        };
        Ok((file, missing))
    }

    /// Gives values to parameters the file lacks (those [`WeightFile::open`] reported missing).
    pub fn fill(&mut self, values: Weights) {
        self.filled.extend(values);
    }

    /// A tensor's values read from the file and converted by `f`; None when the file lacks it. The bytes
    /// are read a block at a time, so reading holds little more than the values.
    fn read<T>(
        &self,
        name: &str,
        f: impl Fn(f64) -> T,
        values: &mut Vec<T>,
    ) -> Option<Result<(), FileError>> {
        let info = self.tensors.get(name)?;
        let (begin, end) = info.data_offsets;
        values.clear();
        values.reserve((end - begin) * 8 / info.dtype.bitsize());
        let result = (|| {
            // A poisoned lock only means another reader panicked; the file handle is still good.
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.seek(SeekFrom::Start(self.data + begin as u64))?;
            // A multiple of every element size.
            let mut block = vec![0u8; 1 << 16];
            let mut left = end - begin;
            while left > 0 {
                let n = left.min(block.len());
                file.read_exact(&mut block[..n])?;
                decode_into(info.dtype, &block[..n], &f, values)
                    .expect("a float type, checked on open");
                left -= n;
            }
            Ok(())
        })();
        Some(result.map_err(|source| FileError::Read {
            path: self.path.clone(),
            source,
        }))
    }

    /// Every parameter in f64: the file's, then the filled ones.
    pub fn to_weights(&self) -> Result<Weights, FileError> {
        let mut w = self.filled.clone();
        for (name, info) in &self.tensors {
            let mut values = Vec::new();
            self.read(name, |v| v, &mut values).expect("listed")?;
            w.insert(
                name.clone(),
                ArrayD::from_shape_vec(info.shape.clone(), values).expect("shape checked"),
            );
        }
        Ok(w)
    }
}

impl Params for WeightFile {
    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        match self.tensors.get(name) {
            Some(info) => Some(info.shape.clone()),
            None => self.filled.dims(name),
        }
    }

    fn read_into(&self, name: &str, out: &mut Vec<f32>) -> Option<Result<(), FileError>> {
        self.read(name, |v| v as f32, out)
            .or_else(|| self.filled.read_into(name, out))
    }
}

/// The model's parameters and their shapes.
fn parameters(g: &Graph) -> Vec<(String, Vec<usize>)> {
    g.node_ids()
        .into_iter()
        .filter(|&id| g.node(id).op.is_param())
        .map(|id| {
            let dims = g.node(id).ty.fixed_dims().into_iter().map(|d| d as usize);
            (g.node(id).path.clone(), dims.collect())
        })
        .collect()
}

/// Reads the model's parameters from a safetensors file in f64, checked as by [`WeightFile::open`]. Returns
/// the weights and the names of parameters the file lacks (only with `allow_missing`).
pub fn read_weights(
    path: &Path,
    g: &Graph,
    options: LoadOptions,
) -> Result<(Weights, Vec<String>), FileError> {
    let (file, missing) = WeightFile::open(path, g, options)?;
    Ok((file.to_weights()?, missing))
}

/// Little-endian element data in one of the float types checkpoints use, each value converted by `f` from
/// f64 (exact for every one of them); None for other types.
fn decode<T>(dtype: Dtype, data: &[u8], f: impl Fn(f64) -> T) -> Option<Vec<T>> {
    let mut out = Vec::new();
    decode_into(dtype, data, f, &mut out)?;
    Some(out)
}

/// [`decode`], appending to `out`.
fn decode_into<T>(dtype: Dtype, data: &[u8], f: impl Fn(f64) -> T, out: &mut Vec<T>) -> Option<()> {
    match dtype {
        Dtype::F32 => out.extend(
            data.chunks_exact(4)
                .map(|b| f(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)),
        ),
        Dtype::F64 => out.extend(
            data.chunks_exact(8)
                .map(|b| f(f64::from_le_bytes(b.try_into().expect("8 bytes")))),
        ),
        Dtype::F16 => out.extend(
            data.chunks_exact(2)
                .map(|b| f(f16_to_f64(u16::from_le_bytes([b[0], b[1]])))),
        ),
        Dtype::BF16 => out
            .extend(data.chunks_exact(2).map(|b| {
                f(f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64)
            })),
        _ => return None,
    }
    Some(())
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Every tensor of a safetensors file, by name: floats as f64, integers as i64 (test fixtures, tools).
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, FileError> {
    let bytes = read(path)?;
    let corrupt = corrupt_safetensors(path);
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let t = match view.dtype() {
            Dtype::I64 => Tensor::I(
                ArrayD::from_shape_vec(
                    shape,
                    view.data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect(),
                )
                .expect("shape"),
            ),
            Dtype::I32 => Tensor::I(
                ArrayD::from_shape_vec(
                    shape,
                    view.data()
                        .chunks_exact(4)
                        .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
                        .collect(),
                )
                .expect("shape"),
            ),
            d => Tensor::F(
                ArrayD::from_shape_vec(
                    shape,
                    decode(d, view.data(), |v| v)
                        .ok_or_else(|| corrupt(format!("`{name}` has unsupported type {d:?}")))?,
                )
                .expect("shape"),
            ),
        };
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes weights as f32 safetensors under their parameter names.
pub fn write_weights(path: &Path, weights: &Weights) -> Result<(), FileError> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(name, a)| {
            (
                name.clone(),
                a.shape().to_vec(),
                a.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = buffers.iter().map(|(name, shape, data)| {
        (
            name.clone(),
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .expect("length matches shape"),
        )
    });
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| FileError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    write_atomically(path, |f| std::io::Write::write_all(f, &bytes))
}

/// Reads a `.npy` (one unnamed array) or uncompressed `.npz` (named arrays, as `numpy.savez` writes) file.
/// Float arrays of any width become f64; integer arrays i64.
pub fn read_arrays(path: &Path) -> Result<Vec<(Option<String>, Tensor)>, FileError> {
    let bytes = read(path)?;
    let is_npz = bytes.starts_with(b"PK");
    let corrupt = |reason: String| FileError::Corrupt {
        path: path.to_path_buf(),
        format: if is_npz { "npz" } else { "npy" },
        reason,
    };
    if !is_npz {
        return Ok(vec![(None, npy_any(&bytes).map_err(corrupt)?)]);
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| corrupt(e.to_string()))?;
        let name = member.name().trim_end_matches(".npy").to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut member, &mut data)
            .map_err(|e| corrupt(format!("member `{name}`: {e}")))?;
        out.push((
            Some(name.clone()),
            npy_any(&data).map_err(|e| corrupt(format!("member `{name}`: {e}")))?,
        ));
    }
    Ok(out)
}

/// Checks that the data an .npy header declares is present, before anything is allocated for it: a header
/// may claim any shape.
fn check_npy_size(bytes: &[u8]) -> Result<(), String> {
    let magic = b"\x93NUMPY";
    if !bytes.starts_with(magic) || bytes.len() < 10 {
        return Err("not an .npy array (no \\x93NUMPY header)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err("truncated header".into()),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or("truncated header")?;
    let header = String::from_utf8_lossy(header);
    let item: u64 = header
        .split("'descr':")
        .nth(1)
        .and_then(|d| d.split('\'').nth(1))
        .and_then(|d| d.trim_start_matches(['<', '>', '|', '=']).get(1..))
        .and_then(|n| n.parse().ok())
        .ok_or("no element type in the header")?;
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(['(', ')']).nth(1))
        .ok_or("no shape in the header")?;
    let mut elements: u64 = 1;
    for dim in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = dim
            .parse()
            .map_err(|_| format!("bad dimension `{dim}` in the header"))?;
        elements = elements
            .checked_mul(d)
            .ok_or("the declared shape overflows")?;
    }
    let needed = elements
        .checked_mul(item)
        .ok_or("the declared shape overflows")?;
    let present = (bytes.len() - start - header_len) as u64;
    if needed > present {
        return Err(format!(
            "the header declares {needed} bytes of data but the file holds {present}"
        ));
    }
    Ok(())
}

fn npy_any(bytes: &[u8]) -> Result<Tensor, String> {
    check_npy_size(bytes)?;
    if let Ok(a) = ArrayD::<f32>::read_npy(Cursor::new(bytes)) {
        return Ok(Tensor::F(a.mapv(|v| v as f64)));
    }
    if let Ok(a) = ArrayD::<f64>::read_npy(Cursor::new(bytes)) {
        return Ok(Tensor::F(a));
    }
    if let Ok(a) = ArrayD::<i64>::read_npy(Cursor::new(bytes)) {
        return Ok(Tensor::I(a));
    }
    match ArrayD::<i32>::read_npy(Cursor::new(bytes)) {
        Ok(a) => Ok(Tensor::I(a.mapv(|v| v as i64))),
        Err(e) => Err(format!(
            "{e} (supported element types: float32, float64, int32, int64)"
        )),
    }
}

/// Writes arrays: one to a `.npy` file, or several (or any number, to a path ending in `.npz`) to an
/// `.npz` archive under their names. Floats are written as float32.
pub fn write_arrays(path: &Path, arrays: &[(String, Tensor)]) -> Result<(), FileError> {
    let npz = path.extension().is_some_and(|e| e == "npz") || arrays.len() != 1;
    let io = |e: String| std::io::Error::other(e);
    write_atomically(path, |f| {
        if !npz {
            return match &arrays[0].1 {
                Tensor::F(a) => a
                    .mapv(|v| v as f32)
                    .write_npy(f)
                    .map_err(|e| io(e.to_string())),
                Tensor::I(a) => a.write_npy(f).map_err(|e| io(e.to_string())),
            };
        }
        let mut w = NpzWriter::new(f);
        for (name, t) in arrays {
            match t {
                Tensor::F(a) => w.add_array(name.as_str(), &a.mapv(|v| v as f32)),
                Tensor::I(a) => w.add_array(name.as_str(), a),
            }
            .map_err(|e| io(e.to_string()))?;
        }
        w.finish().map(|_| ()).map_err(|e| io(e.to_string()))
    })
}
