//! `training_log.txt`: one timestamped line per event, appended across `--continue`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::history::EpochRecord;
use crate::train::error::TrainError;

/// An append-only text log in the fold folder.
pub struct TextLog {
    path: PathBuf,
    file: File,
    echo: bool,
}

impl TextLog {
    /// Opens (or creates) `training_log.txt` in `dir`; `echo` also prints each line to stdout.
    pub fn open(dir: &Path, echo: bool) -> Result<Self, TrainError> {
        let path = dir.join("training_log.txt");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io("opening", &path, e))?;
        Ok(TextLog { path, file, echo })
    }

    /// Appends `message` with a UTC timestamp.
    pub fn line(&mut self, message: &str) -> Result<(), TrainError> {
        let text = format!("{}: {}\n", utc_timestamp(SystemTime::now()), message);
        if self.echo {
            print!("{text}");
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io("writing", &self.path, e))
    }

    /// Appends the fixed-format line of a finished epoch.
    pub fn epoch(&mut self, record: &EpochRecord) -> Result<(), TrainError> {
        self.line(&format_epoch(record))
    }
}

/// Formats the fixed-format epoch line: `epoch E train_loss X val_loss X pseudo_dice [..]
/// ema_dice X lr X epoch_time_s X data_wait_s X nonfinite_steps N`.
pub fn format_epoch(r: &EpochRecord) -> String {
    let dice: Vec<String> = r.dice_per_class.iter().map(|d| format!("{d:.4}")).collect();
    format!(
        "epoch {} train_loss {:.4} val_loss {:.4} pseudo_dice [{}] ema_dice {:.4} lr {:.6e} \
         epoch_time_s {:.2} data_wait_s {:.2} nonfinite_steps {}",
        r.epoch,
        r.train_loss,
        r.val_loss,
        dice.join(", "),
        r.ema_fg_dice,
        r.lr,
        r.epoch_time_s,
        r.data_wait_s,
        r.nonfinite_steps
    )
}

/// Formats `time` as `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
pub fn utc_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), following
/// Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
