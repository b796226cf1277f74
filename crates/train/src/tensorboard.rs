//! TensorBoard event files (`events.out.tfevents.<time>.<host>.<pid>`), in TensorFlow's
//! record format, readable by PyPI `tensorboard` (`EventAccumulator`, `tensorboard --logdir`).
//!
//! A file is a sequence of records: `u64` little-endian data length, `u32` masked CRC32C of
//! those 8 bytes, the data, `u32` masked CRC32C of the data, where
//! `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`. Each record's data is a serialised
//! `tensorflow.Event` protobuf: the first holds `file_version: "brain.Event:2"`, the others
//! `wall_time`, `step` and a `Summary` of `Value { tag, simple_value }` scalars.
//!
//! A resumed run writes a new file that starts with a `SessionLog { status: START }` event
//! at the first step it will write: TensorBoard then drops the scalars of earlier files from
//! that step on (those the interrupted run wrote after its last checkpoint), so a resumed
//! curve has no duplicate steps.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::error::{Result, TrainError};

/// CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`), as TensorFlow's records use.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TensorFlow's masked CRC of a record part.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `tensorflow.Summary.Value` (only the scalar form).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The scalar's name.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The scalar.
    #[prost(float, tag = "2")]
    pub simple_value: f32,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1 = START, 2 = STOP, 3 = CHECKPOINT.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// The checkpoint involved.
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// A message.
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// What an event carries.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The file's format version.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Scalars.
    #[prost(message, tag = "5")]
    Summary(Summary),
    /// A session marker.
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The payload.
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".into())
}

/// Appends events to one event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates a new event file in `dir` and writes its version record; with `resumed_at`,
    /// also the session-start marker of a resumed run whose first step is `resumed_at`.
    pub fn create(dir: &Path, resumed_at: Option<u64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let t = now();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{}.{}",
            t as u64,
            hostname(),
            std::process::id()
        ));
        let file = File::create(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut w = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        w.write(&Event {
            wall_time: t,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        if let Some(step) = resumed_at {
            w.write(&Event {
                wall_time: t,
                step: step as i64,
                what: Some(What::SessionLog(SessionLog {
                    status: 1,
                    checkpoint_path: String::new(),
                    msg: "resumed".into(),
                })),
            })?;
        }
        w.flush()?;
        Ok(w)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event record.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        rec.extend_from_slice(&data);
        rec.extend_from_slice(&masked_crc32c(&data).to_le_bytes());
        self.out
            .write_all(&rec)
            .map_err(|e| TrainError::io(&self.path, e))
    }

    /// Writes scalars `(tag, value)` at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary {
                value: values
                    .iter()
                    .map(|(tag, v)| SummaryValue {
                        tag: tag.to_string(),
                        simple_value: *v as f32,
                    })
                    .collect(),
            })),
        })
    }

    /// Flushes buffered records to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| TrainError::io(&self.path, e))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Reads back the records of an event file (for tests and tools): every record's CRCs are
/// checked.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |m: String| TrainError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, m));
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad(format!("truncated record at {at}")))?;
        let (len, crc) = head.split_at(8);
        if masked_crc32c(len).to_le_bytes() != crc {
            return Err(bad(format!("length CRC mismatch at {at}")));
        }
        let n = u64::from_le_bytes(len.try_into().unwrap_or([0; 8])) as usize;
        let data = bytes
            .get(at + 12..at + 12 + n)
            .ok_or_else(|| bad(format!("truncated record at {at}")))?;
        let crc = bytes
            .get(at + 12 + n..at + 16 + n)
            .ok_or_else(|| bad(format!("truncated record at {at}")))?;
        if masked_crc32c(data).to_le_bytes() != crc {
            return Err(bad(format!("data CRC mismatch at {at}")));
        }
        out.push(Event::decode(data).map_err(|e| bad(format!("record at {at}: {e}")))?);
        at += 16 + n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // The CRC catalogue's check value for CRC-32C, and RFC 3720 (iSCSI) B.4 vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn events_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), Some(7)).unwrap();
        w.scalars(8, &[("train/loss", 0.5), ("train/learning_rate", 1e-3)])
            .unwrap();
        w.flush().unwrap();
        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        assert!(matches!(&events[1].what, Some(What::SessionLog(s)) if s.status == 1));
        assert_eq!(events[1].step, 7);
        let Some(What::Summary(s)) = &events[2].what else {
            panic!("{:?}", events[2])
        };
        assert_eq!(events[2].step, 8);
        assert_eq!(s.value[0].tag, "train/loss");
        assert_eq!(s.value[0].simple_value, 0.5);
        assert_eq!(s.value[1].simple_value, 1e-3);
        // A damaged byte is caught.
        let mut bytes = std::fs::read(w.path()).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(w.path(), bytes).unwrap();
        assert!(read_events(w.path()).is_err());
    }
}
