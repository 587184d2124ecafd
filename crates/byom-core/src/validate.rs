//! The push-based validator: feed chunks of any size, get events as they are found, then a report.

use crate::report::{Event, Report, Summary};
use crate::settings::Settings;

/// One validation of one package.
#[derive(Debug)]
pub struct Validator {
    settings: Settings,
    fed: u64,
    events: Vec<Event>,
}

impl Validator {
    pub fn new(settings: &Settings) -> Self {
        Validator { settings: settings.clone(), fed: 0, events: Vec::new() }
    }

    /// Feed the next chunk of the `.tar.gz`.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.fed += chunk.len() as u64;
    }

    /// Events found since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The final report.
    pub fn finish(self) -> Report {
        Report {
            valid: false,
            errors: Vec::new(),
            warnings: Vec::new(),
            summary: Summary { compressed_bytes: self.fed, ..Summary::default() },
            model: None,
            settings_hash: self.settings.hash(),
            sha256: None,
            byom_version: crate::VERSION.to_string(),
        }
    }
}
