//! The knowledge base: a full-text index (tantivy, BM25) over a folder of Markdown and text
//! files, behind the `search` host service and the `search_knowledge` tool.
//!
//! Files are split into passages by heading and size ([`passages`]); each passage keeps its
//! file and heading path for citation. The index lives on disk (`[knowledge] index`) with a
//! manifest of the files it was built from (path, size, modification time, SHA-256). Opening
//! the knowledge base checks the folder against the manifest: unchanged files cost one
//! `stat`; a changed modification time costs a hash; a changed hash, a new or a removed file
//! rebuilds the index. A rebuild writes a new index beside the old one and swaps it in, so an
//! interrupted build never leaves a half-written index behind.
//!
//! With an embedding model (`[knowledge] embedding_model`), every passage also gets a vector
//! ([`vectors`]) and a search is hybrid: the best passages by BM25 and the nearest by meaning
//! are merged and ranked by `semantic_weight × similarity + (1 − semantic_weight) × BM25
//! relative to the best BM25 hit`. Questions worded unlike the text ("goods train" for
//! "freight") then still find their passage.

pub mod passages;
pub mod tool;
pub mod vectors;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use murmur_plugin_api::SearchHit;
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::DocAddress;
use tantivy::{
    doc, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, Term,
};

pub use passages::Passage;
pub use vectors::Vectors;

use crate::model::embedding::{self, Embedder};

/// File extensions the knowledge base reads; Markdown is split at headings.
pub const EXTENSIONS: &[&str] = &["md", "markdown", "txt"];

/// Bumped whenever the index layout or the splitting rules change: older indexes rebuild.
const FORMAT: u32 = 2;
const MANIFEST: &str = "murmur-manifest.json";
const TOKENIZER: &str = "murmur_en";
/// Most hits one search returns.
pub const MAX_K: usize = 100;
/// Candidates each side of a hybrid search (BM25 and nearest vectors) contributes.
const HYBRID_CANDIDATES: usize = 20;

/// `[knowledge]`: where the documents are and how they are indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeSettings {
    /// The folder of Markdown and text files (searched recursively; hidden entries skipped).
    pub path: PathBuf,
    /// Where the index is kept.
    pub index: PathBuf,
    /// Passages longer than this many characters are split on paragraph boundaries.
    pub max_passage_chars: usize,
    /// Whether the chat model gets the `search_knowledge` tool.
    pub tool: bool,
    /// Passages the `search_knowledge` tool returns.
    pub tool_results: u32,
    /// A GGUF sentence-embedding model; with one, searches rank by meaning as well as words.
    pub embedding_model: Option<PathBuf>,
    /// Weight of meaning against words in a hybrid search, 0 to 1.
    pub semantic_weight: f32,
    /// CPU threads of the embedding model.
    pub threads: u32,
}

impl KnowledgeSettings {
    /// Settings with the documented defaults.
    pub fn new(path: PathBuf, index: PathBuf) -> Self {
        KnowledgeSettings {
            path,
            index,
            max_passage_chars: 1200,
            tool: true,
            tool_results: 3,
            embedding_model: None,
            semantic_weight: 0.8,
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4) as u32,
        }
    }
}

/// Why the knowledge base could not be opened or searched.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// The folder or a file in it could not be read.
    #[error("knowledge base: cannot read {path}: {source}")]
    Read {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The index could not be written or opened.
    #[error("knowledge index {path}: {message}")]
    Index {
        /// The index folder.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A search failed.
    #[error("knowledge search failed: {0}")]
    Search(String),
    /// The embedding model could not be loaded or failed.
    #[error("knowledge base embedding model: {0}")]
    Embedding(String),
}

/// What opening the knowledge base found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// Files indexed.
    pub files: usize,
    /// Passages in the index.
    pub passages: usize,
    /// Bytes of text indexed.
    pub bytes: u64,
    /// Whether the index was (re)built now; false when it was up to date.
    pub rebuilt: bool,
    /// Why it was rebuilt, or `up to date`.
    pub reason: String,
    /// Files skipped (not UTF-8), with the reason.
    pub skipped: Vec<String>,
    /// Time spent checking and building.
    pub elapsed: Duration,
}

/// One indexed file as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    path: String,
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// The embedding model an index's vectors come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ModelStamp {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
}

impl ModelStamp {
    fn of(path: &Path) -> Result<ModelStamp, KnowledgeError> {
        let meta = std::fs::metadata(path).map_err(|e| KnowledgeError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(ModelStamp {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        })
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// What the index was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    folder: PathBuf,
    max_passage_chars: usize,
    /// The embedding model of the passage vectors, if any.
    embedding: Option<ModelStamp>,
    files: Vec<FileStamp>,
    passages: usize,
    bytes: u64,
    skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    source: Field,
    heading: Field,
    text: Field,
    /// Heading path and text, for matching (a passage's headings name its topic).
    body: Field,
    /// The passage's row in the vectors file (its position in indexing order).
    row: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        source: b.add_text_field("source", STRING | STORED),
        heading: b.add_text_field("heading", STORED),
        text: b.add_text_field("text", STORED),
        body: b.add_text_field("body", indexed),
        row: b.add_u64_field("row", FAST),
    };
    (b.build(), fields)
}

/// English words: split on anything but letters and digits, lowercased, common stop words
/// removed, stemmed (`fares` and `fare` match).
fn analyzer() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder
            .filter(stop)
            .filter(Stemmer::new(Language::English))
            .build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

fn index_error(path: &Path, e: impl std::fmt::Display) -> KnowledgeError {
    KnowledgeError::Index {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A document to index: where it comes from and its passages.
#[derive(Debug, Clone)]
pub struct Document {
    /// Path relative to the knowledge folder, with `/` separators.
    pub source: String,
    /// Its passages.
    pub passages: Vec<Passage>,
}

/// The meaning side of a hybrid knowledge base.
struct Semantic {
    embedder: Arc<Embedder>,
    vectors: Vectors,
    weight: f32,
}

/// An open knowledge base.
pub struct KnowledgeBase {
    index_dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    passages: usize,
    semantic: Option<Semantic>,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("index", &self.index_dir)
            .field("passages", &self.passages)
            .field(
                "embedding_model",
                &self.semantic.as_ref().map(|s| s.embedder.path()),
            )
            .finish_non_exhaustive()
    }
}

impl KnowledgeBase {
    /// Opens the index for `settings`, building or rebuilding it first when the folder
    /// changed (or always, with `force`). `progress` receives one line per stage.
    pub fn open(
        settings: &KnowledgeSettings,
        force: bool,
        progress: &dyn Fn(&str),
    ) -> Result<(KnowledgeBase, BuildReport), KnowledgeError> {
        let started = Instant::now();
        let folder = std::fs::canonicalize(&settings.path).map_err(|e| KnowledgeError::Read {
            path: settings.path.clone(),
            source: e,
        })?;
        if !folder.is_dir() {
            return Err(KnowledgeError::Read {
                path: settings.path.clone(),
                source: std::io::Error::other("not a folder"),
            });
        }
        let files = scan(&folder)?;
        let embedder = match &settings.embedding_model {
            None => None,
            Some(path) => {
                progress(&format!("loading embedding model {}...", path.display()));
                let e =
                    Embedder::load(path, settings.threads).map_err(KnowledgeError::Embedding)?;
                Some((Arc::new(e), ModelStamp::of(path)?))
            }
        };
        let model_stamp = embedder.as_ref().map(|(_, stamp)| stamp.clone());
        let old = read_manifest(&settings.index);
        let mut verdict = match &old {
            _ if force => Err("rebuild requested".to_string()),
            None => Err("no index yet".to_string()),
            Some(m) if m.embedding != model_stamp => Err("the embedding model changed".to_string()),
            Some(m) => up_to_date(m, &folder, settings.max_passage_chars, &files),
        };
        let semantic = |kb: KnowledgeBase| match &embedder {
            None => Ok(kb),
            Some((e, _)) => kb.with_embedder(e.clone(), settings.semantic_weight),
        };
        // An index the manifest calls current but that does not open (damaged, or written
        // by another version) is rebuilt.
        let mut current = None;
        if verdict.is_ok() {
            match KnowledgeBase::open_index(&settings.index).and_then(semantic) {
                Ok(kb) => current = Some(kb),
                Err(e) => verdict = Err(format!("the index does not open: {e}")),
            }
        }
        let (manifest, rebuilt, reason) = match verdict {
            Ok(fresh) => {
                if let Some(fresh) = &fresh {
                    // Only modification times moved: keep the index, remember the new times.
                    write_manifest(&settings.index, fresh)?;
                }
                let m = fresh.or(old).ok_or_else(|| {
                    index_error(&settings.index, "manifest vanished while reading it")
                })?;
                (m, false, "up to date".to_string())
            }
            Err(reason) => {
                progress(&format!(
                    "indexing {} ({} files; {reason})...",
                    settings.path.display(),
                    files.len()
                ));
                let e = embedder.as_ref().map(|(e, stamp)| (e.as_ref(), stamp));
                let m = build(settings, &folder, &files, e, progress)?;
                (m, true, reason)
            }
        };
        let kb = match current {
            Some(kb) => kb,
            None => semantic(KnowledgeBase::open_index(&settings.index)?)?,
        };
        let report = BuildReport {
            files: manifest.files.len(),
            passages: manifest.passages,
            bytes: manifest.bytes,
            rebuilt,
            reason,
            skipped: manifest.skipped,
            elapsed: started.elapsed(),
        };
        if rebuilt {
            for s in &report.skipped {
                progress(&format!("skipped {s}"));
            }
            progress(&format!(
                "indexed {} files, {} passages ({} KB) in {:.2} s into {}",
                report.files,
                report.passages,
                report.bytes / 1024,
                report.elapsed.as_secs_f64(),
                settings.index.display()
            ));
        }
        Ok((kb, report))
    }

    /// Opens an existing index folder.
    pub fn open_index(dir: &Path) -> Result<KnowledgeBase, KnowledgeError> {
        let index = Index::open_in_dir(dir).map_err(|e| index_error(dir, e))?;
        index.tokenizers().register(TOKENIZER, analyzer());
        // The fields as this index has them, by name: an index written by another version
        // is refused rather than read with the wrong fields.
        let schema = index.schema();
        let field = |name: &str| {
            schema.get_field(name).map_err(|_| {
                index_error(
                    dir,
                    format!("has no field `{name}`; rebuild it with `murmur index --force`"),
                )
            })
        };
        let fields = Fields {
            id: field("id")?,
            source: field("source")?,
            heading: field("heading")?,
            text: field("text")?,
            body: field("body")?,
            row: field("row")?,
        };
        if schema != self::schema().0 {
            return Err(index_error(
                dir,
                "was written with another layout; rebuild it with `murmur index --force`",
            ));
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| index_error(dir, e))?;
        let passages = usize::try_from(reader.searcher().num_docs()).unwrap_or(usize::MAX);
        Ok(KnowledgeBase {
            index_dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            passages,
            semantic: None,
        })
    }

    /// Makes searches hybrid: loads the passage vectors written with this index (see
    /// [`Vectors`]) and ranks by `weight` × similarity to the query as embedded by `embedder`,
    /// plus (1 − `weight`) × relative BM25. Fails when the index has no vectors or they do not
    /// match the model or the index.
    pub fn with_embedder(
        mut self,
        embedder: Arc<Embedder>,
        weight: f32,
    ) -> Result<KnowledgeBase, KnowledgeError> {
        let dir = &self.index_dir;
        let vectors = Vectors::read(dir).map_err(|e| index_error(dir, e))?;
        if vectors.dim() != embedder.dim() {
            return Err(index_error(
                dir,
                format!(
                    "has vectors of {} dimensions, the embedding model makes {}",
                    vectors.dim(),
                    embedder.dim()
                ),
            ));
        }
        if vectors.len() != self.passages {
            return Err(index_error(
                dir,
                format!(
                    "has {} vectors for {} passages",
                    vectors.len(),
                    self.passages
                ),
            ));
        }
        vectors.prepare();
        self.semantic = Some(Semantic {
            embedder,
            vectors,
            weight: weight.clamp(0.0, 1.0),
        });
        Ok(self)
    }

    /// The text a passage is matched by, in words and in meaning: heading path, then text.
    pub fn matched_text(p: &Passage) -> String {
        format!("{}\n{}", p.heading, p.text)
    }

    /// Writes a new index of these documents into `dir`, which must not exist yet. Used by
    /// [`KnowledgeBase::open`] and by benchmarks that index generated text.
    pub fn write_index(
        dir: &Path,
        documents: impl IntoIterator<Item = Document>,
    ) -> Result<usize, KnowledgeError> {
        std::fs::create_dir_all(dir).map_err(|e| index_error(dir, e))?;
        let (schema, f) = schema();
        let settings = IndexSettings {
            // Small blocks: fetching a hit's text reads and parses one block.
            docstore_blocksize: 4096,
            ..IndexSettings::default()
        };
        let index = Index::builder()
            .schema(schema)
            .settings(settings)
            .create_in_dir(dir)
            .map_err(|e| index_error(dir, e))?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let mut writer: IndexWriter = index
            .writer_with_num_threads(1, 64 * 1024 * 1024)
            .map_err(|e| index_error(dir, e))?;
        let mut count = 0usize;
        for d in documents {
            for (n, p) in d.passages.iter().enumerate() {
                let body = KnowledgeBase::matched_text(p);
                writer
                    .add_document(doc!(
                        f.id => passage_id(&d.source, n),
                        f.source => d.source.as_str(),
                        f.heading => p.heading.as_str(),
                        f.text => p.text.as_str(),
                        f.body => body,
                        f.row => count as u64,
                    ))
                    .map_err(|e| index_error(dir, e))?;
                count += 1;
            }
        }
        writer.commit().map_err(|e| index_error(dir, e))?;
        // The index is written once and then only read: one segment makes every search
        // walk one posting list per word instead of one per segment.
        let segments = index
            .searchable_segment_ids()
            .map_err(|e| index_error(dir, e))?;
        if segments.len() > 1 {
            writer
                .merge(&segments)
                .wait()
                .map_err(|e| index_error(dir, e))?;
        }
        writer
            .wait_merging_threads()
            .map_err(|e| index_error(dir, e))?;
        Ok(count)
    }

    /// Passages in the index.
    pub fn passages(&self) -> usize {
        self.passages
    }

    /// Segments of the index (one after a build).
    pub fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// The index folder.
    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// Up to `k` passages for a free-text query, best first. Without an embedding model by
    /// BM25 over heading and text; with one, hybrid (see the module docs). Words are matched
    /// after lowercasing, stop-word removal and stemming; query syntax is not interpreted, so
    /// any text is a valid query. A query with no searchable word finds nothing.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<SearchHit>, KnowledgeError> {
        let k = k.min(MAX_K);
        let Some(words) = self.query(query) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let Some(sem) = &self.semantic else {
            return self
                .top_bm25(&searcher, words.as_ref(), k)?
                .into_iter()
                .map(|(score, address)| self.hit(&searcher, address, score, None))
                .collect();
        };
        // One after the other: the model's threads occupy every core while it embeds, and a
        // word search beside them slows both.
        let lexical = self.top_bm25(&searcher, words.as_ref(), k.max(HYBRID_CANDIDATES))?;
        let q = sem
            .embedder
            .embed(&[query])
            .map_err(KnowledgeError::Embedding)?
            .pop()
            .ok_or_else(|| KnowledgeError::Embedding("no vector for the query".into()))?;
        let best = lexical.first().map_or(1.0, |h| h.0).max(f32::MIN_POSITIVE);
        // Candidates: the best by words (with their BM25) and the nearest by meaning (BM25
        // taken as 0: they are not among the best by words).
        let mut candidates: Vec<(usize, f32, Option<DocAddress>)> = Vec::new();
        for (score, address) in lexical {
            candidates.push((self.row_of(&searcher, address)?, score, Some(address)));
        }
        for (row, _) in sem.vectors.nearest(&q, k.max(HYBRID_CANDIDATES)) {
            if !candidates.iter().any(|c| c.0 == row) {
                candidates.push((row, 0.0, None));
            }
        }
        let mut ranked: Vec<(f32, f32, usize, f32, Option<DocAddress>)> = candidates
            .into_iter()
            .map(|(row, bm25, address)| {
                let similarity = sem.vectors.row(row).map_or(0.0, |v| embedding::dot(v, &q));
                let fused = sem.weight * similarity + (1.0 - sem.weight) * (bm25 / best);
                (fused, similarity, row, bm25, address)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
        ranked.truncate(k);
        ranked
            .into_iter()
            .map(|(fused, similarity, row, _, address)| {
                let address = match address {
                    Some(a) => a,
                    None => self.address_of_row(&searcher, sem, row)?,
                };
                self.hit(&searcher, address, fused, Some(similarity))
            })
            .collect()
    }

    fn top_bm25(
        &self,
        searcher: &tantivy::Searcher,
        query: &dyn Query,
        n: usize,
    ) -> Result<Vec<(f32, DocAddress)>, KnowledgeError> {
        searcher
            .search(query, &TopDocs::with_limit(n).order_by_score())
            .map_err(|e| KnowledgeError::Search(e.to_string()))
    }

    /// The vectors row of an indexed passage.
    fn row_of(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
    ) -> Result<usize, KnowledgeError> {
        let column = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64("row")
            .map_err(|e| KnowledgeError::Search(e.to_string()))?;
        column
            .first(address.doc_id)
            .and_then(|r| usize::try_from(r).ok())
            .ok_or_else(|| KnowledgeError::Search(format!("passage {address:?} has no row")))
    }

    /// The indexed passage of a vectors row, found by its id.
    fn address_of_row(
        &self,
        searcher: &tantivy::Searcher,
        sem: &Semantic,
        row: usize,
    ) -> Result<DocAddress, KnowledgeError> {
        let id = sem
            .vectors
            .id(row)
            .ok_or_else(|| KnowledgeError::Search(format!("no vector row {row}")))?;
        let term = TermQuery::new(
            Term::from_field_text(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        self.top_bm25(searcher, &term, 1)?
            .first()
            .map(|h| h.1)
            .ok_or_else(|| KnowledgeError::Search(format!("passage {id} is not in the index")))
    }

    fn hit(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
        score: f32,
        similarity: Option<f32>,
    ) -> Result<SearchHit, KnowledgeError> {
        let d: TantivyDocument = searcher
            .doc(address)
            .map_err(|e| KnowledgeError::Search(e.to_string()))?;
        let text = |field: Field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let f = self.fields;
        Ok(SearchHit {
            id: text(f.id),
            source: text(f.source),
            heading: text(f.heading),
            text: text(f.text),
            score,
            similarity,
        })
    }

    /// The query: every distinct analysed word of the text, any of which may match.
    fn query(&self, text: &str) -> Option<Box<dyn Query>> {
        let mut analyzer = self
            .index
            .tokenizers()
            .get(TOKENIZER)
            .unwrap_or_else(analyzer);
        let mut stream = analyzer.token_stream(text);
        let mut words: Vec<String> = Vec::new();
        while stream.advance() {
            let w = &stream.token().text;
            if !words.contains(w) {
                words.push(w.clone());
            }
        }
        if words.is_empty() {
            return None;
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|w| {
                let term = Term::from_field_text(self.fields.body, w);
                let q: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        Some(Box::new(BooleanQuery::new(clauses)))
    }
}

/// A file found in the folder.
#[derive(Debug, Clone)]
struct Found {
    path: PathBuf,
    relative: String,
    size: u64,
    mtime_ns: u128,
}

/// The indexable files under `folder`, sorted; hidden files and folders are skipped.
fn scan(folder: &Path) -> Result<Vec<Found>, KnowledgeError> {
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(folder)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.map_err(|e| KnowledgeError::Read {
            path: e.path().unwrap_or(folder).to_path_buf(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let ext = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if !EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let meta = entry.metadata().map_err(|e| KnowledgeError::Read {
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let relative = entry
            .path()
            .strip_prefix(folder)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        out.push(Found {
            path: entry.path().to_path_buf(),
            relative,
            size: meta.len(),
            mtime_ns,
        });
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, KnowledgeError> {
    std::fs::read(path).map_err(|e| KnowledgeError::Read {
        path: path.to_path_buf(),
        source: e,
    })
}

use crate::digest::sha256_hex as sha256;

fn read_manifest(index: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(index.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the manifest through a temporary file and a rename.
fn write_manifest(index: &Path, m: &Manifest) -> Result<(), KnowledgeError> {
    let text = serde_json::to_string_pretty(m).map_err(|e| index_error(index, e))?;
    let tmp = index.join(format!(".{MANIFEST}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| index_error(index, e))?;
    std::fs::rename(&tmp, index.join(MANIFEST)).map_err(|e| index_error(index, e))
}

/// `Ok(None)`: the index is current; `Ok(Some(m))`: current, but modification times moved
/// (contents hash the same), so the manifest should be rewritten as `m`; `Err(reason)`:
/// rebuild.
fn up_to_date(
    m: &Manifest,
    folder: &Path,
    max_passage_chars: usize,
    files: &[Found],
) -> Result<Option<Manifest>, String> {
    if m.format != FORMAT {
        return Err("index format changed".into());
    }
    if m.folder != folder {
        return Err(format!("index was built from {}", m.folder.display()));
    }
    if m.max_passage_chars != max_passage_chars {
        return Err("max_passage_chars changed".into());
    }
    if m.files.len() != files.len() || m.files.iter().zip(files).any(|(a, b)| a.path != b.relative)
    {
        return Err("files were added or removed".into());
    }
    let mut fresh = m.clone();
    let mut touched = false;
    for (stamp, found) in fresh.files.iter_mut().zip(files) {
        if stamp.size == found.size && stamp.mtime_ns == found.mtime_ns {
            continue;
        }
        let bytes = read_file(&found.path).map_err(|e| e.to_string())?;
        if sha256(&bytes) != stamp.sha256 {
            return Err(format!("{} changed", found.relative));
        }
        stamp.size = found.size;
        stamp.mtime_ns = found.mtime_ns;
        touched = true;
    }
    Ok(touched.then_some(fresh))
}

/// Reads and splits every file, writes a new index beside the old one and swaps it in.
fn build(
    settings: &KnowledgeSettings,
    folder: &Path,
    files: &[Found],
    embedder: Option<(&Embedder, &ModelStamp)>,
    progress: &dyn Fn(&str),
) -> Result<Manifest, KnowledgeError> {
    let mut stamps = Vec::with_capacity(files.len());
    let mut documents = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    let mut bytes_total = 0u64;
    for f in files {
        let bytes = read_file(&f.path)?;
        let stamp = FileStamp {
            path: f.relative.clone(),
            size: f.size,
            mtime_ns: f.mtime_ns,
            sha256: sha256(&bytes),
        };
        stamps.push(stamp);
        let Ok(text) = String::from_utf8(bytes) else {
            skipped.push(format!("{}: not UTF-8 text", f.relative));
            continue;
        };
        bytes_total += text.len() as u64;
        let markdown = !f.relative.to_ascii_lowercase().ends_with(".txt");
        let passages = if markdown {
            passages::split_markdown(&text, settings.max_passage_chars)
        } else {
            passages::split_text(&text, settings.max_passage_chars)
        };
        documents.push(Document {
            source: f.relative.clone(),
            passages,
        });
    }
    let index = &settings.index;
    let parent = index
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| index_error(index, e))?;
    let name = index
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    let pid = std::process::id();
    let fresh = parent.join(format!(".{name}.new-{pid}"));
    let old = parent.join(format!(".{name}.old-{pid}"));
    let _ = std::fs::remove_dir_all(&fresh);
    let vectors = match embedder {
        Some((e, _)) => Some(embed_passages(e, &documents, progress)?),
        None => None,
    };
    let passages = KnowledgeBase::write_index(&fresh, documents)?;
    if let Some(v) = vectors {
        v.write(&fresh).map_err(|e| index_error(&fresh, e))?;
    }
    let manifest = Manifest {
        format: FORMAT,
        folder: folder.to_path_buf(),
        max_passage_chars: settings.max_passage_chars,
        embedding: embedder.map(|(_, stamp)| stamp.clone()),
        files: stamps,
        passages,
        bytes: bytes_total,
        skipped,
    };
    write_manifest(&fresh, &manifest)?;
    if index.exists() {
        std::fs::rename(index, &old).map_err(|e| index_error(index, e))?;
    }
    std::fs::rename(&fresh, index).map_err(|e| index_error(index, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(manifest)
}

/// The id of the `n`th passage (from 0) of a file: `source#n+1`.
pub fn passage_id(source: &str, n: usize) -> String {
    format!("{source}#{}", n + 1)
}

/// The vector of every passage, in indexing order, with a progress line about every two
/// seconds.
pub fn embed_passages(
    embedder: &Embedder,
    documents: &[Document],
    progress: &dyn Fn(&str),
) -> Result<Vectors, KnowledgeError> {
    const BATCH: usize = 16;
    let total: usize = documents.iter().map(|d| d.passages.len()).sum();
    let started = Instant::now();
    let mut last = started;
    let mut vectors = Vectors::new(embedder.dim());
    let all = documents.iter().flat_map(|d| {
        d.passages
            .iter()
            .enumerate()
            .map(move |(n, p)| (passage_id(&d.source, n), KnowledgeBase::matched_text(p)))
    });
    let all: Vec<(String, String)> = all.collect();
    for chunk in all.chunks(BATCH) {
        let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let vs = embedder.embed(&texts).map_err(KnowledgeError::Embedding)?;
        for ((id, _), v) in chunk.iter().zip(vs) {
            vectors
                .push(id.clone(), &v)
                .map_err(KnowledgeError::Embedding)?;
        }
        if last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            progress(&format!(
                "embedding passages: {}/{total} ({:.0} s)",
                vectors.len(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    if total > 0 {
        progress(&format!(
            "embedded {total} passages in {:.2} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(vectors)
}

#[cfg(test)]
mod tests;
