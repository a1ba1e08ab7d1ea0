//! SQLite for Vouch's daemons (registrar, verifier): one thread owns each connection and runs
//! the jobs sent to it, so async handlers never block on the database and never share a lock;
//! the schema is versioned by an ordered list of migrations applied at open.

use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database {}: {cause}", path.display())]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("creating the database directory {}: {cause}", path.display())]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database {} has schema version {found}, newer than this program understands ({supported})", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database migration to version {version}: {cause}")]
    Migration {
        version: i64,
        cause: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database row for agent {agent_id}: column {column} holds an invalid value")]
    Corrupt {
        agent_id: String,
        column: &'static str,
    },
    #[error("starting the database thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Setting(String),
    #[error("the database thread has stopped")]
    Closed,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Environment variable choosing SQLite's `synchronous` level: `normal` (default) or `full`.
pub const SYNCHRONOUS_ENV: &str = "VOUCH_DB_SYNCHRONOUS";

/// Why `normal` by default: in WAL mode it never corrupts the database and loses nothing when
/// a daemon crashes or is killed; only a power cut or kernel crash can drop the last commits.
/// What those are worth here: a verifier state change is re-derived by the next quote (an
/// undelivered V is delivered again, a lost FAILED is detected again on the next poll) and an
/// agent registers again at start. `full` fsyncs every commit — on this machine's disk that is
/// ≈ 20–45 ms per write, which would be most of the bootstrap latency (two writes sit on its
/// critical path). Operators who want every commit on disk set `VOUCH_DB_SYNCHRONOUS=full`.
fn synchronous() -> Result<&'static str, DbError> {
    let Ok(v) = std::env::var(SYNCHRONOUS_ENV) else {
        return Ok("NORMAL");
    };
    match v.to_ascii_lowercase().as_str() {
        "" | "normal" => Ok("NORMAL"),
        "full" => Ok("FULL"),
        "extra" => Ok("EXTRA"),
        _ => Err(DbError::Setting(format!(
            "{SYNCHRONOUS_ENV}={v:?}: expected normal, full or extra"
        ))),
    }
}

/// Handle to a database owner thread. Cheap to clone; the thread ends when the last clone drops.
#[derive(Clone, Debug)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl Db {
    /// Open (creating it and its directory if needed) and migrate the database at `path`, then
    /// start its owner thread named `thread`. `migrations[i]` brings the schema from version
    /// `i` to `i + 1`; a database newer than `migrations.len()` is refused.
    pub fn open(path: &Path, thread: &str, migrations: &[&str]) -> Result<Db, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| DbError::CreateDir {
                path: dir.to_path_buf(),
                cause,
            })?;
        }
        let open_err = |cause| DbError::Open {
            path: path.to_path_buf(),
            cause,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", synchronous()?)
            .map_err(open_err)?;
        migrate(&mut conn, path, migrations)?;

        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(DbError::Thread)?;
        Ok(Db {
            jobs: tx,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the database thread and await its result.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| E::from(DbError::Closed))?;
        rx.await.map_err(|_| E::from(DbError::Closed))?
    }
}

/// The schema version recorded in the database (0 for a new one).
pub fn schema_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let v: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(v.unwrap_or(0))
}

fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), DbError> {
    let current = schema_version(conn)?;
    let supported = migrations.len() as i64;
    if current > supported {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported,
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let err = |cause| DbError::Migration { version, cause };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(db = %path.display(), version, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[&str] = &["CREATE TABLE t (x INTEGER NOT NULL)"];
    const V2: &[&str] = &[
        "CREATE TABLE t (x INTEGER NOT NULL)",
        "ALTER TABLE t ADD COLUMN y TEXT",
    ];

    #[tokio::test]
    async fn migrates_forward_keeps_data_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/db.sqlite3");
        let db = Db::open(&path, "t", V1).unwrap();
        db.call(|c| {
            c.execute("INSERT INTO t (x) VALUES (7)", [])
                .map_err(DbError::from)
        })
        .await
        .unwrap();
        drop(db);
        let db = Db::open(&path, "t", V2).unwrap();
        let (x, y): (i64, Option<String>) = db
            .call(|c| {
                c.query_row("SELECT x, y FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
        assert_eq!((x, y), (7, None));
        drop(db);
        let e = Db::open(&path, "t", V1).unwrap_err();
        assert!(
            matches!(
                e,
                DbError::TooNew {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_failing_migration_leaves_the_old_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        drop(Db::open(&path, "t", V1).unwrap());
        let e = Db::open(&path, "t", &[V1[0], "ALTER TABLE nope ADD COLUMN z"]).unwrap_err();
        assert!(matches!(e, DbError::Migration { version: 2, .. }), "{e}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 1);
    }
}
