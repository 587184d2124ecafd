//! The push-based validator: feed chunks of any size, get events as they are found, then a report.
//!
//! One pass: bytes → [`GzipDecoder`] → [`TarWalker`] → per-member sinks (metadata buffered up to
//! `max_metadata_bytes`, the `.pt` streamed into [`PtInspector`], everything else skipped).
//! Memory is bounded by the limits, never by the package size.
//!
//! A caller that needs the model file itself (the compile server) passes an [`ExtractSink`]:
//! the inspected `.pt` is handed to it in the same pass, byte for byte as the inspector sees it,
//! and [`Validator::finish_package`] hands forward the parsed metadata with the verdict. Nothing
//! reads the package a second time, so nothing can read it differently.
//!
//! The report is a pure function of the bytes: archive issues appear in stream order, then rule
//! issues in code order, whatever the chunking.

use crate::archive::{GzipDecoder, TarSink, TarWalker};
use crate::package::contents::{is_export_pt, CONFIG, MANIFEST, MOCHI};
use crate::package::{json, yaml, Contents, Declared, MetaFile, ValidatedPackage};
use crate::report::{Event, Issue, Report, Severity, Summary};
use crate::rules::archive::{METADATA_TOO_LARGE, NESTED_TOP_FOLDER};
use crate::rules::{config, cross_file, layout, manifest, mochi};
use crate::settings::Settings;
use crate::torch::{self, PtInspector};

/// Receives the bytes of the one `.pt` the validator inspects (the first `.pt` directly in
/// `export_artifacts/`), in the same pass and exactly as the inspector sees them.
///
/// `start` comes once with the member's archive path and its size from the tar header (already
/// within `max_uncompressed_bytes`); exactly `size` bytes then arrive through `data`, then
/// `end`. On a fatal archive error the stream simply stops (no `end`). Nothing else of the
/// archive is delivered: the metadata reach the caller parsed, in [`ValidatedPackage`], so no
/// second parser ever reads their text. What was received may be used only when
/// [`Validator::finish_package`] says the package is valid.
pub trait ExtractSink {
    fn start(&mut self, path: &str, size: u64);
    fn data(&mut self, bytes: &[u8]);
    fn end(&mut self);
}

/// No extraction: plain validation (the browser, the CLI, the upload path). Every call is an
/// empty inline function, so validation costs what it did before sinks existed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoExtract;

impl ExtractSink for NoExtract {
    #[inline(always)]
    fn start(&mut self, _path: &str, _size: u64) {}
    #[inline(always)]
    fn data(&mut self, _bytes: &[u8]) {}
    #[inline(always)]
    fn end(&mut self) {}
}

impl<T: ExtractSink + ?Sized> ExtractSink for &mut T {
    fn start(&mut self, path: &str, size: u64) {
        (**self).start(path, size);
    }
    fn data(&mut self, bytes: &[u8]) {
        (**self).data(bytes);
    }
    fn end(&mut self) {
        (**self).end();
    }
}

/// One validation of one package (optionally extracting its `.pt` into `S`).
#[derive(Debug)]
pub struct Validator<S: ExtractSink = NoExtract> {
    settings: Settings,
    fed: u64,
    gzip: GzipDecoder,
    tar: TarWalker,
    sink: Collector<S>,
    fatal: bool,
    /// Fed already-inflated tar bytes ([`Validator::feed_inflated`]): the gzip layer was checked
    /// by the caller.
    inflated: bool,
}

/// Where the current member's bytes go.
#[derive(Debug)]
enum Target {
    Skip,
    Meta(usize, Vec<u8>),
    Pt,
}

/// Receives the walk: builds [`Contents`], streams the `.pt`, records events.
#[derive(Debug)]
struct Collector<S> {
    settings: Settings,
    events: Vec<Event>,
    archive_issues: Vec<Issue>,
    entries: Vec<String>,
    contents: Contents,
    target: Target,
    pt: Option<PtInspector>,
    extract: S,
}

const META_FILES: [&str; 3] = [CONFIG, MOCHI, MANIFEST];

impl<S: ExtractSink> Collector<S> {
    fn meta_slot(&mut self, slot: usize) -> &mut MetaFile {
        match slot {
            0 => &mut self.contents.config,
            1 => &mut self.contents.mochi,
            _ => &mut self.contents.manifest,
        }
    }

    fn emit(&mut self, issue: Issue) {
        self.events.push(Event::Issue(issue.clone()));
        self.archive_issues.push(issue);
    }
}

impl<S: ExtractSink> TarSink for Collector<S> {
    fn entry(&mut self, path: &str, size: u64) {
        self.entries.push(path.to_string());
        self.events.push(Event::Entry {
            path: path.to_string(),
            size,
        });
    }

    fn file_start(&mut self, path: &str, size: u64) {
        self.contents.files.push((path.to_string(), size));
        self.target = Target::Skip;
        if let Some(slot) = META_FILES.iter().position(|m| *m == path) {
            if size > self.settings.limits.max_metadata_bytes {
                *self.meta_slot(slot) = MetaFile::TooLarge;
                self.emit(METADATA_TOO_LARGE.issue(
                    Some(path),
                    format!(
                        "{path} is {size} bytes, over the {} byte limit for metadata files (max_metadata_bytes).",
                        self.settings.limits.max_metadata_bytes
                    ),
                ));
            } else {
                // Bounded by max_metadata_bytes, checked above.
                self.target =
                    Target::Meta(slot, Vec::with_capacity(usize::try_from(size).unwrap_or(0)));
            }
        } else if is_export_pt(path) {
            self.contents.pt_files.push(path.to_string());
            if self.pt.is_none() {
                self.pt = Some(PtInspector::new(&self.settings, path));
                self.target = Target::Pt;
                self.extract.start(path, size);
            }
        }
    }

    fn file_data(&mut self, data: &[u8]) {
        match &mut self.target {
            Target::Skip => {}
            Target::Meta(_, buf) => buf.extend_from_slice(data),
            Target::Pt => {
                if let Some(pt) = &mut self.pt {
                    pt.feed(data);
                }
                self.extract.data(data);
            }
        }
    }

    fn file_end(&mut self) {
        let target = std::mem::replace(&mut self.target, Target::Skip);
        if let Target::Pt = target {
            self.extract.end();
        }
        if let Target::Meta(slot, buf) = target {
            let limits = &self.settings.limits;
            let parsed = if slot == 0 {
                yaml::parse(&buf, limits)
            } else {
                json::parse(&buf, limits)
            };
            let meta = MetaFile::Parsed(parsed);
            // Report what this file alone gets wrong as soon as it is known.
            let mut found: Vec<Issue> = layout::check_metadata(META_FILES[slot], &meta)
                .into_iter()
                .collect();
            found.extend(match slot {
                0 => config::check(&meta),
                1 => mochi::check(&meta),
                _ => manifest::check(&meta),
            });
            self.events.extend(found.into_iter().map(Event::Issue));
            *self.meta_slot(slot) = meta;
        }
    }

    fn issue(&mut self, issue: Issue) {
        self.emit(issue);
    }
}

impl Validator<NoExtract> {
    pub fn new(settings: &Settings) -> Self {
        Validator::with_sink(settings, NoExtract)
    }
}

impl<S: ExtractSink> Validator<S> {
    /// A validator that also hands the inspected `.pt` to `extract` (see [`ExtractSink`]).
    pub fn with_sink(settings: &Settings, extract: S) -> Self {
        Validator {
            settings: settings.clone(),
            fed: 0,
            gzip: GzipDecoder::new(&settings.limits),
            tar: TarWalker::new(&settings.limits),
            sink: Collector {
                settings: settings.clone(),
                events: Vec::new(),
                archive_issues: Vec::new(),
                entries: Vec::new(),
                contents: Contents::default(),
                target: Target::Skip,
                pt: None,
                extract,
            },
            fatal: false,
            inflated: false,
        }
    }

    /// Feed the next inflated (tar) bytes, for a caller that inflated the gzip stream itself and
    /// proved it equal to what [`Validator::feed`] would inflate, with no gzip issue and no limit
    /// of the gzip layer reached (the CLI's parallel reader, through
    /// [`crate::archive::chunked::Stitcher`]). Do not mix with [`Validator::feed`]; end with
    /// [`Validator::finish_inflated`]. The report is then the same, byte for byte.
    pub fn feed_inflated(&mut self, tar_bytes: &[u8]) {
        self.inflated = true;
        if self.fatal {
            return;
        }
        if let Err(issue) = self.tar.push(tar_bytes, &mut self.sink) {
            self.fail(issue);
        }
    }

    /// The final report after [`Validator::feed_inflated`]; `compressed_bytes` is the size of the
    /// whole `.tar.gz` (what [`Validator::feed`] would have counted).
    pub fn finish_inflated(mut self, compressed_bytes: u64) -> Report {
        self.inflated = true;
        self.fed = compressed_bytes;
        self.finish()
    }

    /// Feed the next chunk of the `.tar.gz` (any size, including 0 or 1 byte).
    pub fn feed(&mut self, chunk: &[u8]) {
        self.fed += chunk.len() as u64;
        if self.fatal {
            return;
        }
        let tar = &mut self.tar;
        let sink = &mut self.sink;
        let result = self.gzip.push(chunk, &mut |bytes| tar.push(bytes, sink));
        if let Err(issue) = result {
            self.fail(issue);
        }
    }

    /// True once a fatal error was found: the verdict is settled and further bytes are ignored.
    pub fn is_finished(&self) -> bool {
        self.fatal
    }

    /// Events found since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.sink.events)
    }

    fn fail(&mut self, issue: Issue) {
        self.fatal = true;
        self.sink.emit(issue);
    }

    /// The final report.
    pub fn finish(self) -> Report {
        self.conclude().0
    }

    /// The final report and, when the package is valid, what it declares, parsed once: the
    /// compile server builds from exactly what was checked. `Err` carries the report of an
    /// invalid package, boxed (whatever an [`ExtractSink`] received must then be discarded).
    pub fn finish_package(self) -> Result<ValidatedPackage, Box<Report>> {
        let (report, mut contents) = self.conclude();
        if !report.valid {
            return Err(Box::new(report));
        }
        let model_path = contents.pt_path().map(str::to_string);
        let model_records = std::mem::take(&mut contents.model_records);
        let (config, mochi, manifest) = (
            contents.config.into_value(),
            contents.mochi.into_value(),
            contents.manifest.into_value(),
        );
        // A valid report guarantees all of these (BYOM101/102 and the parse rules); should that
        // ever not hold, the caller gets the report and treats it as a refusal, never a panic.
        match (config, mochi, manifest, model_path, report.model.clone()) {
            (Some(config), Some(mochi), Some(manifest), Some(model_path), Some(model)) => {
                Ok(ValidatedPackage {
                    declared: Declared::of(Some(&config), Some(&mochi), Some(&manifest)),
                    report,
                    config,
                    mochi,
                    manifest,
                    model_path,
                    model,
                    model_records,
                })
            }
            _ => Err(Box::new(report)),
        }
    }

    /// The report, and the contents it was made from.
    fn conclude(mut self) -> (Report, Contents) {
        if !self.fatal {
            let gzip = if self.inflated {
                Ok(())
            } else {
                self.gzip.finish()
            };
            if let Err(issue) = gzip.and_then(|()| self.tar.finish()) {
                self.fail(issue);
            }
        }
        let declared_bytes = self.tar.declared_bytes();
        let Collector {
            archive_issues,
            entries,
            mut contents,
            pt,
            ..
        } = self.sink;
        let mut rule_issues: Vec<Issue> = Vec::new();
        let mut model = None;
        let mut summary = Summary {
            compressed_bytes: self.fed,
            uncompressed_bytes: declared_bytes,
            entries,
            ..Summary::default()
        };

        if !self.fatal {
            if let Some(pt) = pt {
                let (inspection, issues, spans) = pt.finish_with_spans();
                contents.inspection = Some(inspection);
                contents.inspection_issues = issues;
                contents.model_records = spans;
            }
            if let Some(folder) = contents.single_top_folder() {
                let folder = folder.to_string();
                rule_issues.push(NESTED_TOP_FOLDER.issue_with_hint(
                    Some(&format!("{folder}/")),
                    format!("All files are inside the folder '{folder}/' instead of at the archive root."),
                    format!("Create the archive from inside the folder: `tar czf model.tar.gz -C {folder} .`."),
                ));
            } else {
                rule_issues.extend(layout::check(&contents));
                for (name, meta) in [
                    (CONFIG, &contents.config),
                    (MOCHI, &contents.mochi),
                    (MANIFEST, &contents.manifest),
                ] {
                    rule_issues.extend(layout::check_metadata(name, meta));
                }
                rule_issues.extend(config::check(&contents.config));
                rule_issues.extend(mochi::check(&contents.mochi));
                rule_issues.extend(manifest::check(&contents.manifest));
                rule_issues.extend(manifest::check_files(&contents));
                rule_issues.extend(cross_file::check(&contents));
            }
            let declared = Declared::from(&contents);
            summary.model_type = declared.stage_type().map(str::to_string);
            summary.input_shape = declared.input_shape().map(<[i64]>::to_vec);
            summary.output_shape = declared.output_shape();
            summary.num_classes = declared.num_classes();
            summary.class_names = declared.class_names.clone();
            // Twins of a recognised state dict: the package's own name for its builder decides
            // (torch::twins), before anything reads the architecture.
            if let (Some(path), Some(inspection)) = (
                contents.pt_path().map(str::to_string),
                contents.inspection.as_mut(),
            ) {
                rule_issues.extend(torch::twins::choose(
                    inspection,
                    declared.architecture.as_deref(),
                    &path,
                ));
            }
            if let (Some(path), Some(inspection)) = (contents.pt_path(), &contents.inspection) {
                summary.model_file = Some(path.to_string());
                summary.model_file_bytes = contents.size_of(path);
                rule_issues.extend(contents.inspection_issues.iter().cloned());
                let model = torch::cross_check(
                    inspection,
                    path,
                    declared.input_shape(),
                    declared.num_classes(),
                );
                // One error with the shape to write, not the same wrong axis in four words.
                if model
                    .iter()
                    .any(|i| i.code == torch::rules::INPUT_CHANNELS_CONTRADICT.code)
                {
                    rule_issues.retain(|i| !cross_file::follows_from_channels(i));
                }
                rule_issues.extend(model);
            }
            rule_issues.sort_by_key(|i| i.code);
            model = contents.inspection.take();
        }

        let (errors, warnings): (Vec<Issue>, Vec<Issue>) = archive_issues
            .into_iter()
            .chain(rule_issues)
            .partition(|i| i.severity == Severity::Error);
        let report = Report {
            valid: errors.is_empty(),
            errors,
            warnings,
            summary,
            model,
            settings_hash: self.settings.hash(),
            sha256: None,
            byom_version: crate::VERSION.to_string(),
        };
        (report, contents)
    }
}

/// Validate a package held in memory.
pub fn validate_bytes(bytes: &[u8], settings: &Settings) -> Report {
    let mut v = Validator::new(settings);
    v.feed(bytes);
    v.finish()
}

/// Validate a package from a reader, in 1 MiB chunks (read to the end, so `compressed_bytes` is
/// the file size; bytes after a fatal error cost only the read).
pub fn validate_reader<R: std::io::Read>(
    mut reader: R,
    settings: &Settings,
) -> std::io::Result<Report> {
    let mut v = Validator::new(settings);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        v.feed(&buf[..n]);
    }
    Ok(v.finish())
}
