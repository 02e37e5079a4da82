//! The durable job store: one SQLite file in the data folder (`cemiface.db`), migrated on open.
//! Jobs, their per-step metrics, artifacts and logs, the admin sessions and the API keys.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cemiface_app::admin_protocol::KeyView;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::spec::{JobKind, JobSpec, JobState};

/// Schema versions, applied in order; `PRAGMA user_version` remembers how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT NOT NULL,
        device TEXT NOT NULL,
        resume INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        unit TEXT NOT NULL DEFAULT '',
        rate REAL,
        error TEXT,
        webhook_url TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX jobs_state ON jobs(state, id);
    CREATE TABLE metrics (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        step INTEGER NOT NULL,
        key TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (job_id, key, step)
    );
    CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        step INTEGER,
        bytes INTEGER NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (job_id, path)
    );
    CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        at REAL NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX logs_job ON logs(job_id, id);
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        webhook_secret TEXT NOT NULL,
        rate_per_minute INTEGER NOT NULL,
        quota_images INTEGER NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        expires_at REAL NOT NULL
    );",
    // Argon2id replacements of a configured PBKDF2 admin hash, keyed by the SHA-256 of that hash.
    "CREATE TABLE password_upgrades (
        configured_sha256 TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        upgraded_at REAL NOT NULL
    );",
    // Facts about the store itself: the id of the data folder it belongs to (jobs/data_id.rs).
    "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // Per-key caps: jobs queued or running at once, identities in one job.
    "ALTER TABLE api_keys ADD COLUMN max_active_jobs INTEGER NOT NULL DEFAULT 2;
    ALTER TABLE api_keys ADD COLUMN max_identities INTEGER NOT NULL DEFAULT 10000;",
    // Shards of jobs run on Slurm: the task of each shard's current attempt, and its last state.
    "CREATE TABLE slurm_tasks (
        job_id INTEGER NOT NULL,
        shard INTEGER NOT NULL,
        slurm_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (job_id, shard)
    );",
];

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: JobKind,
    pub spec: JobSpec,
    pub state: JobState,
    pub owner: String,
    pub device: String,
    pub resume: bool,
    pub done: u64,
    pub total: u64,
    pub unit: String,
    /// Units per second since the job last started.
    pub rate: Option<f64>,
    pub error: Option<String>,
    pub webhook_url: Option<String>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub updated_at: f64,
}

/// A file a job produced.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRow {
    pub id: i64,
    pub job_id: i64,
    pub kind: String,
    /// Relative to the job's folder.
    pub path: String,
    pub step: Option<u64>,
    pub bytes: u64,
    pub created_at: f64,
}

/// An API key as stored (never the key itself): what the panel sees of it, and its webhook secret.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub view: KeyView,
    pub webhook_secret: String,
}

/// A key's fields read as the view's (`key.id`, `key.scopes`, …).
impl std::ops::Deref for KeyRow {
    type Target = KeyView;
    fn deref(&self) -> &KeyView {
        &self.view
    }
}

/// One shard of a job run on Slurm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlurmTask {
    pub shard: u32,
    /// `<array job id>_<task index>` of its current attempt.
    pub slurm_id: String,
    /// 0 for the first submission, then one more per retry.
    pub attempt: u32,
    /// pending, running, done or failed (with Slurm's state, e.g. `failed (CANCELLED)`).
    pub state: String,
}

/// What a key may do: requests a minute, images in all, jobs at once, identities per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    pub rate_per_minute: u32,
    pub quota_images: u64,
    pub max_active_jobs: u32,
    pub max_identities: u64,
}

/// The store; every call takes the connection for one short statement or transaction.
pub struct Store {
    conn: Mutex<Connection>,
}

const JOB_COLUMNS: &str = "id, kind, spec, state, owner, device, resume, done, total, unit, rate, error, \
     webhook_url, created_at, started_at, finished_at, updated_at";

fn job_row(r: &Row) -> rusqlite::Result<JobRow> {
    let text = |i: usize| r.get::<_, String>(i);
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    Ok(JobRow {
        id: r.get(0)?,
        kind: text(1)?.parse().map_err(|e| bad(1, e))?,
        spec: serde_json::from_str(&text(2)?).map_err(|e| bad(2, e.to_string()))?,
        state: text(3)?.parse().map_err(|e| bad(3, e))?,
        owner: text(4)?,
        device: text(5)?,
        resume: r.get(6)?,
        done: r.get::<_, i64>(7)? as u64,
        total: r.get::<_, i64>(8)? as u64,
        unit: text(9)?,
        rate: r.get(10)?,
        error: r.get(11)?,
        webhook_url: r.get(12)?,
        created_at: r.get(13)?,
        started_at: r.get(14)?,
        finished_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

fn key_row(r: &Row) -> rusqlite::Result<KeyRow> {
    let view = KeyView {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        scopes: r
            .get::<_, String>(3)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        rate_per_minute: r.get(5)?,
        quota_images: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        revoked_at: r.get(8)?,
        max_active_jobs: r.get(9)?,
        max_identities: r.get::<_, i64>(10)? as u64,
    };
    Ok(KeyRow {
        view,
        webhook_secret: r.get(4)?,
    })
}

const KEY_COLUMNS: &str =
    "id, name, prefix, scopes, webhook_secret, rate_per_minute, quota_images, created_at, revoked_at, \
     max_active_jobs, max_identities";

impl Store {
    /// Opens (creating) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn =
            Connection::open(path).with_context(|| format!("opening the job store {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "{}: schema version {version} is newer than this build knows ({}); use a newer cemiface",
                path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- jobs ----

    pub fn insert_job(
        &self,
        spec: &JobSpec,
        owner: &str,
        device: &str,
        webhook_url: Option<&str>,
    ) -> anyhow::Result<i64> {
        let t = now();
        let db = self.db();
        db.execute(
            "INSERT INTO jobs (kind, spec, state, owner, device, created_at, updated_at, webhook_url, total)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?5, ?6, ?7)",
            params![
                spec.kind().as_str(),
                serde_json::to_string(spec)?,
                owner,
                device,
                t,
                webhook_url,
                spec.planned_units() as i64
            ],
        )?;
        Ok(db.last_insert_rowid())
    }

    pub fn job(&self, id: i64) -> anyhow::Result<Option<JobRow>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_row,
            )
            .optional()?)
    }

    /// Jobs, newest first; `owner` restricts to one owner.
    pub fn jobs(&self, owner: Option<&str>, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 IS NULL OR owner = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![owner, limit as i64], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Queued jobs in the order they run.
    pub fn queued(&self) -> anyhow::Result<Vec<JobRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY id"
        ))?;
        let rows = st.query_map([], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets the state of a job that is not starting; `error` replaces the stored error (cleared when None).
    pub fn set_state(&self, id: i64, state: JobState, error: Option<&str>) -> anyhow::Result<()> {
        let t = now();
        let db = self.db();
        // Jobs start through `claim`; every other state but queued ends a run.
        let finished = (state != JobState::Queued).then_some(t);
        db.execute(
            "UPDATE jobs SET state = ?2, error = ?3, updated_at = ?4, finished_at = ?5 WHERE id = ?1",
            params![id, state.as_str(), error, t, finished],
        )?;
        Ok(())
    }

    /// Moves a queued job to running; false when it is no longer queued (cancelled or paused in
    /// the meantime).
    pub fn claim(&self, id: i64) -> anyhow::Result<bool> {
        let t = now();
        let n = self.db().execute(
            "UPDATE jobs SET state = 'running', error = NULL, started_at = ?2, finished_at = NULL, rate = NULL,
                 updated_at = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, t],
        )?;
        Ok(n == 1)
    }

    /// Queues a paused, interrupted, failed or cancelled job again, continuing from its last
    /// checkpoint.
    pub fn requeue(&self, id: i64) -> anyhow::Result<()> {
        self.db().execute(
            "UPDATE jobs SET state = 'queued', resume = 1, error = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    /// Jobs left `running` by a server that stopped without finishing them become `interrupted`.
    pub fn mark_interrupted(&self) -> anyhow::Result<Vec<i64>> {
        let db = self.db();
        let ids: Vec<i64> = db
            .prepare("SELECT id FROM jobs WHERE state = 'running'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        db.execute(
            "UPDATE jobs SET state = 'interrupted', error = 'the server stopped while the job ran',
                 finished_at = ?1, updated_at = ?1 WHERE state = 'running'",
            [now()],
        )?;
        Ok(ids)
    }

    pub fn set_progress(
        &self,
        id: i64,
        done: u64,
        total: u64,
        unit: &str,
        rate: Option<f64>,
    ) -> anyhow::Result<()> {
        self.db().execute(
            "UPDATE jobs SET done = ?2, total = ?3, unit = ?4, rate = COALESCE(?5, rate), updated_at = ?6 WHERE id = ?1",
            params![id, done as i64, total as i64, unit, rate, now()],
        )?;
        Ok(())
    }

    /// How many jobs are in each state.
    pub fn state_counts(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let db = self.db();
        let mut st = db.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An owner's jobs that hold or wait for a slot, or can be resumed.
    pub fn active_jobs(&self, owner: &str) -> anyhow::Result<u64> {
        let n: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM jobs WHERE owner = ?1 AND state IN ('queued', 'running', 'paused', 'interrupted')",
            [owner],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Images requested by an owner's jobs (for quotas); cancelled-before-start jobs excluded.
    pub fn images_requested(&self, owner: &str) -> anyhow::Result<u64> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT spec, state, done FROM jobs WHERE owner = ?1 AND kind = 'generate'")?;
        let rows = st.query_map([owner], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut n = 0;
        for row in rows {
            let (spec, state, done) = row?;
            // A cancelled or failed job counts what it made; the rest of its plan is refunded.
            if matches!(state.as_str(), "cancelled" | "failed") {
                n += done.max(0) as u64;
            } else if let Ok(spec) = serde_json::from_str::<JobSpec>(&spec) {
                n += spec.planned_images();
            }
        }
        Ok(n)
    }

    // ---- metrics, logs, artifacts ----

    pub fn add_metrics(&self, id: i64, step: u64, values: &[(&str, f64)]) -> anyhow::Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for (k, v) in values.iter().filter(|(_, v)| v.is_finite()) {
            tx.execute(
                "INSERT OR REPLACE INTO metrics (job_id, step, key, value) VALUES (?1, ?2, ?3, ?4)",
                params![id, step as i64, k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets metrics after `step` (a resumed run redoes those steps).
    pub fn truncate_metrics(&self, id: i64, step: u64) -> anyhow::Result<()> {
        self.db().execute(
            "DELETE FROM metrics WHERE job_id = ?1 AND step > ?2",
            params![id, step as i64],
        )?;
        Ok(())
    }

    /// One metric's curve, every `stride`-th step after `since`.
    pub fn metric(&self, id: i64, key: &str, since: u64, stride: u64) -> anyhow::Result<Vec<(u64, f64)>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT step, value FROM metrics WHERE job_id = ?1 AND key = ?2 AND step > ?3 AND step % ?4 = 0 ORDER BY step",
        )?;
        let rows = st.query_map(params![id, key, since as i64, stride.max(1) as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Names of the metrics a job recorded.
    pub fn metric_keys(&self, id: i64) -> anyhow::Result<Vec<String>> {
        let db = self.db();
        let mut st = db.prepare("SELECT DISTINCT key FROM metrics WHERE job_id = ?1 ORDER BY key")?;
        let rows = st.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn metric_count(&self, id: i64, key: &str) -> anyhow::Result<u64> {
        let n: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM metrics WHERE job_id = ?1 AND key = ?2",
            params![id, key],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    pub fn add_log(&self, id: i64, line: &str) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT INTO logs (job_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, now(), line],
        )?;
        Ok(())
    }

    /// The last `limit` log lines, oldest first.
    pub fn logs(&self, id: i64, limit: usize) -> anyhow::Result<Vec<(f64, String)>> {
        let db = self.db();
        let mut st = db.prepare("SELECT at, line FROM logs WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2")?;
        let mut rows: Vec<(f64, String)> = st
            .query_map(params![id, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// Records an artifact once (a path already recorded is left as it is).
    pub fn add_artifact(
        &self,
        id: i64,
        kind: &str,
        path: &str,
        step: Option<u64>,
        bytes: u64,
    ) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT OR IGNORE INTO artifacts (job_id, kind, path, step, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, kind, path, step.map(|s| s as i64), bytes as i64, now()],
        )?;
        Ok(())
    }

    pub fn artifacts(&self, id: i64) -> anyhow::Result<Vec<ArtifactRow>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, job_id, kind, path, step, bytes, created_at FROM artifacts WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(ArtifactRow {
                id: r.get(0)?,
                job_id: r.get(1)?,
                kind: r.get(2)?,
                path: r.get(3)?,
                step: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
                bytes: r.get::<_, i64>(5)? as u64,
                created_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- admin sessions ----

    pub fn add_session(&self, hash: &str, csrf: &str, expires_at: f64) -> anyhow::Result<()> {
        let db = self.db();
        db.execute("DELETE FROM sessions WHERE expires_at < ?1", [now()])?;
        db.execute(
            "INSERT INTO sessions (hash, csrf, expires_at) VALUES (?1, ?2, ?3)",
            params![hash, csrf, expires_at],
        )?;
        Ok(())
    }

    /// The CSRF token of a live session.
    pub fn session(&self, hash: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .db()
            .query_row(
                "SELECT csrf FROM sessions WHERE hash = ?1 AND expires_at > ?2",
                params![hash, now()],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn remove_session(&self, hash: &str) -> anyhow::Result<()> {
        self.db()
            .execute("DELETE FROM sessions WHERE hash = ?1", [hash])?;
        Ok(())
    }

    // ---- the data folder's id ----

    /// The id of the data folder this store belongs to, once recorded.
    pub fn data_id(&self) -> anyhow::Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT value FROM meta WHERE key = 'data_id'", [], |r| r.get(0))
            .optional()?)
    }

    /// Records the data folder's id.
    pub fn set_data_id(&self, id: &str) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('data_id', ?1)",
            [id],
        )?;
        Ok(())
    }

    // ---- admin password upgrades ----

    /// The Argon2id hash that replaced the configured hash with this SHA-256, if a login upgraded it.
    pub fn upgraded_password(&self, configured_sha256: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .db()
            .query_row(
                "SELECT hash FROM password_upgrades WHERE configured_sha256 = ?1",
                [configured_sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records the Argon2id replacement of a configured hash.
    pub fn save_upgraded_password(&self, configured_sha256: &str, hash: &str) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO password_upgrades (configured_sha256, hash, upgraded_at) VALUES (?1, ?2, ?3)",
            params![configured_sha256, hash, now()],
        )?;
        Ok(())
    }

    // ---- Slurm tasks ----

    /// The shards of a job run on Slurm, by shard index.
    pub fn slurm_tasks(&self, job_id: i64) -> anyhow::Result<Vec<SlurmTask>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT shard, slurm_id, attempt, state FROM slurm_tasks WHERE job_id = ?1 ORDER BY shard",
        )?;
        let rows = st.query_map([job_id], |r| {
            Ok(SlurmTask {
                shard: r.get(0)?,
                slurm_id: r.get(1)?,
                attempt: r.get(2)?,
                state: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records shard `t.shard`'s current task (a new attempt replaces the old one).
    pub fn put_slurm_task(&self, job_id: i64, t: &SlurmTask) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT INTO slurm_tasks (job_id, shard, slurm_id, attempt, state) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (job_id, shard) DO UPDATE SET slurm_id = ?3, attempt = ?4, state = ?5",
            params![job_id, t.shard, t.slurm_id, t.attempt, t.state],
        )?;
        Ok(())
    }

    /// Interrupted jobs that have tasks on Slurm (a restarted server follows them again).
    pub fn interrupted_on_slurm(&self) -> anyhow::Result<Vec<i64>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT DISTINCT t.job_id FROM slurm_tasks t JOIN jobs j ON j.id = t.job_id
             WHERE j.state = 'interrupted' ORDER BY t.job_id",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a job's Slurm tasks (after a cancel or a final failure: a resume submits afresh).
    pub fn clear_slurm_tasks(&self, job_id: i64) -> anyhow::Result<()> {
        self.db()
            .execute("DELETE FROM slurm_tasks WHERE job_id = ?1", [job_id])?;
        Ok(())
    }

    // ---- API keys ----

    pub fn add_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &str,
        scopes: &[String],
        webhook_secret: &str,
        limits: &KeyLimits,
    ) -> anyhow::Result<i64> {
        let db = self.db();
        db.execute(
            "INSERT INTO api_keys (name, prefix, hash, scopes, webhook_secret, rate_per_minute, quota_images,
                                   max_active_jobs, max_identities, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                name,
                prefix,
                hash,
                scopes.join(","),
                webhook_secret,
                limits.rate_per_minute,
                limits.quota_images as i64,
                limits.max_active_jobs,
                limits.max_identities as i64,
                now()
            ],
        )?;
        Ok(db.last_insert_rowid())
    }

    pub fn keys(&self) -> anyhow::Result<Vec<KeyRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))?;
        let rows = st.query_map([], key_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live (not revoked) key with this hash.
    pub fn key_by_hash(&self, hash: &str) -> anyhow::Result<Option<KeyRow>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"),
                [hash],
                key_row,
            )
            .optional()?)
    }

    pub fn key(&self, id: i64) -> anyhow::Result<Option<KeyRow>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                key_row,
            )
            .optional()?)
    }

    /// Revokes a key; false when there is no such live key.
    pub fn revoke_key(&self, id: i64) -> anyhow::Result<bool> {
        let n = self.db().execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now()],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::spec::{GenerateSpec, JobSpec};

    fn spec() -> JobSpec {
        serde_json::from_value(
            serde_json::json!({"kind": "generate", "identities": 2, "images_per_identity": 3}),
        )
        .unwrap()
    }

    #[test]
    fn migrations_apply_once_and_rows_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("cemiface-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cemiface.db");
        let id = {
            let s = Store::open(&path).unwrap();
            let id = s.insert_job(&spec(), "key:1", "cpu", None).unwrap();
            s.add_artifact(id, "report", "dataset/report.json", None, 10)
                .unwrap();
            s.add_artifact(id, "report", "dataset/report.json", None, 10)
                .unwrap();
            s.add_metrics(id, 1, &[("loss", 0.5), ("lr", f64::NAN)]).unwrap();
            assert!(s.claim(id).unwrap());
            assert!(!s.claim(id).unwrap(), "a running job is not claimed twice");
            id
        };
        let s = Store::open(&path).unwrap();
        let version: usize = s.db().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len());
        assert_eq!(s.mark_interrupted().unwrap(), vec![id]);
        let row = s.job(id).unwrap().unwrap();
        assert_eq!(
            (row.state, row.total, row.owner.as_str()),
            (JobState::Interrupted, 6, "key:1")
        );
        assert!(matches!(
            row.spec,
            JobSpec::Generate(GenerateSpec { identities: 2, .. })
        ));
        assert_eq!(s.artifacts(id).unwrap().len(), 1, "an artifact is recorded once");
        assert_eq!(
            s.metric_keys(id).unwrap(),
            ["loss"],
            "non-finite values are not stored"
        );
        assert_eq!(s.images_requested("key:1").unwrap(), 6);
        // Cancelled work is refunded: only the images made count.
        s.set_progress(id, 2, 6, "img", None).unwrap();
        s.set_state(id, JobState::Cancelled, None).unwrap();
        assert_eq!(s.images_requested("key:1").unwrap(), 2);
        s.db()
            .pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        drop(s);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer than this build"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
